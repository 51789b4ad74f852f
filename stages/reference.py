"""reference: a logistic regression and the majority class on a binary dataset's
cross-validation folds, the rows every network's cross-validated scores are compared with;
and the folds and scores that crossval, evaluate and this stage share (scikit-learn only).

Usage: python -m stages.reference DATASET   (dvc.yaml: one stage per crossval.datasets entry)
Writes metrics/reference/<dataset>.json: per model (logistic, majority) the mean and standard
deviation over the folds of AUC, balanced accuracy and accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from stages.formats import load_split, split_path, write_atomic
from stages.params import (
    METRICS_DIR,
    PREPARED_DIR,
    REPO_ROOT,
    ConfigError,
    load_params,
    require,
    run_stage,
    validate_params,
)

METRICS = ("auc", "balanced_accuracy", "accuracy")
DIGITS = 6  # as evaluate's metrics: stable, readable files


def non_test_rows(prepared: Path, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """The rows cross-validation splits: the train file's, then the val file's (never test)."""
    (x_train, y_train), (x_val, y_val) = (
        load_split(split_path(prepared, name, dataset)) for name in ("train", "val")
    )
    return np.concatenate([x_train, x_val]), np.concatenate([y_train, y_val])


def cv_splits(y: np.ndarray, cfg: dict[str, Any], seed: int) -> list[tuple[np.ndarray, ...]]:
    """(fit rows, held-out rows) of each fold of each repeat: RepeatedStratifiedKFold with
    crossval.folds and crossval.repeats, seeded, so every model sees the same folds."""
    from sklearn.model_selection import RepeatedStratifiedKFold

    smallest = int(np.bincount(y).min())
    if cfg["folds"] > smallest:
        raise ConfigError(
            f"crossval.folds: {cfg['folds']} folds need as many rows of each class;"
            f" the rarest class has {smallest}"
        )
    cv = RepeatedStratifiedKFold(n_splits=cfg["folds"], n_repeats=cfg["repeats"], random_state=seed)
    return list(cv.split(np.zeros((len(y), 1)), y))


def fold_scores(y: np.ndarray, prob: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """AUC of the class-1 probabilities, balanced accuracy and accuracy of the predictions."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score

    return {
        "auc": float(roc_auc_score(y, prob)),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
        "accuracy": float(accuracy_score(y, pred)),
    }


def summarize(per_fold: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per metric the mean and the sample standard deviation (ddof 1) over the folds."""
    out = {}
    for name in METRICS:
        values = np.array([fold[name] for fold in per_fold])
        sd = values.std(ddof=1) if len(values) > 1 else 0.0
        out[name] = {"mean": round(float(values.mean()), DIGITS), "sd": round(float(sd), DIGITS)}
    return out


def score_splits(splits: list[dict[str, list]], threshold: float) -> dict[str, dict[str, float]]:
    """summarize() of held-out predictions ({"y", "probability"} per fold, as crossval writes
    them), class 1 where the probability is >= threshold."""
    per_fold = []
    for split in splits:
        prob = np.asarray(split["probability"])
        per_fold.append(fold_scores(np.asarray(split["y"]), prob, prob >= threshold))
    return summarize(per_fold)


def reference_scores(
    x: np.ndarray, y: np.ndarray, cfg: dict[str, Any], seed: int, threshold: float
) -> dict[str, Any]:
    """On cv_splits: crossval.logistic's LogisticRegression (class 1 at >= threshold), and
    the majority class of each fold's fit rows (its share of them as the probability)."""
    from sklearn.linear_model import LogisticRegression

    logistic, majority = [], []
    for fit_rows, held in cv_splits(y, cfg, seed):
        model = LogisticRegression(**cfg["logistic"], random_state=seed)
        prob = model.fit(x[fit_rows], y[fit_rows]).predict_proba(x[held])[:, 1]
        logistic.append(fold_scores(y[held], prob, prob >= threshold))
        share = y[fit_rows].mean()
        constant = np.full(len(held), share)
        majority.append(fold_scores(y[held], constant, np.full(len(held), int(share > 0.5))))
    return {
        "folds": cfg["folds"],
        "repeats": cfg["repeats"],
        "rows": len(y),
        "logistic": summarize(logistic),
        "majority": summarize(majority),
    }


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset", help="an entry of crossval.datasets in params.yaml")
    dataset = parser.parse_args().dataset
    params = load_params()
    validate_params(params)
    cfg = require(params, "crossval")
    if dataset not in cfg["datasets"]:
        raise ConfigError(f"crossval.datasets: {dataset!r} is not listed: {cfg['datasets']}")
    x, y = non_test_rows(REPO_ROOT / PREPARED_DIR, dataset)
    threshold = require(params, "evaluate.threshold")
    scores = reference_scores(x, y, cfg, require(params, "seed"), threshold)
    path = REPO_ROOT / METRICS_DIR / "reference" / f"{dataset}.json"
    write_atomic(path, (json.dumps(scores, indent=2, sort_keys=True) + "\n").encode())
    print(f"reference {dataset}: {json.dumps(scores)}")


if __name__ == "__main__":
    run_stage(main)
