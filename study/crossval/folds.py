"""Cross-validation of a binary variant on its dataset's non-test rows (the crossval stages):
the variant refitted on every fold, beside a logistic regression and the majority class
scored on the same folds; per metric the mean and sd over the folds."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from study.config.errors import ConfigError
from study.config.paths import split_path
from study.config.sections import Crossval, Logistic
from study.config.variant import Variant
from study.io.files import finite
from study.io.splits import load_split
from study.training.fitting import fit
from study.training.model import build_model, class_probabilities

METRICS = ("auc", "balanced_accuracy", "accuracy")
Splits = list[tuple[np.ndarray, np.ndarray]]


def non_test_rows(prepared: Path, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """The rows cross-validation splits: the train file's, then the val file's (never test)."""
    (x_train, y_train), (x_val, y_val) = (
        load_split(split_path(prepared, name, dataset)) for name in ("train", "val")
    )
    return np.concatenate([x_train, x_val]), np.concatenate([y_train, y_val])


def cv_splits(y: np.ndarray, folds: int, repeats: int, seed: int) -> Splits:
    """(fit rows, held-out rows) of each fold of each repeat: RepeatedStratifiedKFold,
    seeded, so the variant and the references see the same folds."""
    from sklearn.model_selection import RepeatedStratifiedKFold

    smallest = int(np.bincount(y).min())
    if folds > smallest:
        raise ConfigError(
            f"crossval.folds: {folds} folds need as many rows of each class;"
            f" the rarest class has {smallest}"
        )
    cv = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    return list(cv.split(np.zeros((len(y), 1)), y))


def fold_scores(y: np.ndarray, prob: np.ndarray, pred: np.ndarray) -> dict[str, float | None]:
    """AUC of the class-1 probabilities, balanced accuracy and accuracy of the predictions
    (AUC None when the probabilities are not finite: a diverged fit)."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score

    auc = float(roc_auc_score(y, prob)) if np.isfinite(prob).all() else None
    return {
        "auc": auc,
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
        "accuracy": float(accuracy_score(y, pred)),
    }


def summarize(per_fold: list[dict[str, float | None]]) -> dict[str, dict[str, float | None]]:
    """Per metric the mean and the sample standard deviation (ddof 1) over the folds; None
    when a fold has none."""
    out = {}
    for name in METRICS:
        values = [fold[name] for fold in per_fold]
        if any(v is None for v in values):
            out[name] = {"mean": None, "sd": None}
            continue
        arr = np.array(values)
        sd = arr.std(ddof=1) if len(arr) > 1 else 0.0
        out[name] = {"mean": float(arr.mean()), "sd": float(sd)}
    return out


def variant_folds(
    cfg: Variant,
    x: np.ndarray,
    y: np.ndarray,
    splits: Splits,
    threshold: float,
    on_fold: Callable[[int, float], None] | None = None,
) -> list[dict[str, float | None]]:
    """The variant's scores on each fold's held-out rows, trained on its fit rows as the train
    stage trains it (study.training.fitting: its config and class weights, for its `epochs`;
    no early stopping, so the held-out rows are never watched).

    One model, reset before every fold to the weights, optimizer and dropout-seed state it
    was built with: the same fit as a freshly built model's (tests/evaluation/test_crossval.py),
    without tracing TF's graphs again per fold."""
    import keras

    model = build_model(cfg, x.shape[1:])
    model.optimizer.build(model.trainable_variables)
    state = [*model.variables, *model.optimizer.variables]
    initial = [keras.ops.convert_to_numpy(v) for v in state]
    out = []
    for i, (fit_rows, held) in enumerate(splits):
        start = time.perf_counter()
        for variable, value in zip(state, initial, strict=True):
            variable.assign(value)
        fit(model, cfg, (x[fit_rows], y[fit_rows]))
        outputs = keras.ops.convert_to_numpy(model(x[held], training=False))
        # To 6 digits, as every score: no result hangs on float noise below that.
        prob = np.array([round(float(p), 6) for p in class_probabilities(outputs, cfg)[:, 1]])
        out.append(fold_scores(y[held], prob, prob >= threshold))
        if on_fold is not None:
            on_fold(i, time.perf_counter() - start)
    return out


def reference_folds(
    x: np.ndarray, y: np.ndarray, splits: Splits, logistic: Logistic, seed: int, threshold: float
) -> dict[str, list[dict[str, float | None]]]:
    """On the same folds: crossval.logistic's LogisticRegression (class 1 at >= threshold),
    and the majority class of each fold's fit rows (its share of them as the probability)."""
    from sklearn.linear_model import LogisticRegression

    out: dict[str, list] = {"logistic": [], "majority": []}
    for fit_rows, held in splits:
        model = LogisticRegression(**logistic.model_dump(), random_state=seed)
        prob = model.fit(x[fit_rows], y[fit_rows]).predict_proba(x[held])[:, 1]
        out["logistic"].append(fold_scores(y[held], prob, prob >= threshold))
        share = y[fit_rows].mean()
        constant = np.full(len(held), share)
        majority = np.full(len(held), int(share > 0.5))
        out["majority"].append(fold_scores(y[held], constant, majority))
    return out


def crossval_scores(
    cfg: Variant,
    data: tuple[np.ndarray, np.ndarray],
    cv: Crossval,
    seed: int,
    threshold: float,
    on_fold: Callable[[int, float], None] | None = None,
) -> dict[str, Any]:
    """metrics/crossval/<variant>.json: the folds, and per model (variant, logistic,
    majority) the mean and sd over the folds of AUC, balanced accuracy and accuracy."""
    x, y = data
    splits = cv_splits(y, cv.folds, cv.repeats, seed)
    folds = variant_folds(cfg, x, y, splits, threshold, on_fold)
    references = reference_folds(x, y, splits, cv.logistic, seed, threshold)
    doc = {"dataset": cfg.dataset, "folds": cv.folds, "repeats": cv.repeats, "rows": len(y)}
    doc["variant"] = summarize(folds)
    doc |= {name: summarize(scores) for name, scores in references.items()}
    return finite(doc)
