"""Cross-validation's references recomputed (bench/check_metrics.py runs this): the folds of
crossval.variants' datasets redrawn with scikit-learn's RepeatedStratifiedKFold on the train +
val rows, the logistic reference refitted and the majority class counted on each, their mean
and sd with the statistics module, compared with metrics/crossval/<variant>.json. The
network's folds are not refitted (its figures are only checked to be there)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from bench.metric_diffs import Diffs
from study.config.paths import METRICS_DIR, PREPARED_DIR, split_path
from study.io.splits import load_split


def fold_scores(y: np.ndarray, prob: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score

    return {
        "auc": roc_auc_score(y, prob),
        "balanced_accuracy": balanced_accuracy_score(y, pred),
        "accuracy": accuracy_score(y, pred),
    }


def check_crossval(root: Path, params: Any, diffs: Diffs) -> list[str]:
    """metrics/crossval/<variant>.json of every cross-validated variant: the references."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import RepeatedStratifiedKFold

    cv, threshold, lines = params.crossval, params.evaluate.threshold, []
    for dataset, listed in cv.variants.items():
        if not listed:
            continue
        parts = [load_split(split_path(root / PREPARED_DIR, s, dataset)) for s in ("train", "val")]
        x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        folds = RepeatedStratifiedKFold(
            n_splits=cv.folds, n_repeats=cv.repeats, random_state=params.seed
        ).split(x, y)
        found: dict[str, list[dict[str, float]]] = {"logistic": [], "majority": []}
        for fit_rows, held in folds:
            logistic = LogisticRegression(
                C=cv.logistic.C,
                max_iter=cv.logistic.max_iter,
                class_weight=cv.logistic.class_weight,
            )
            prob = logistic.fit(x[fit_rows], y[fit_rows]).predict_proba(x[held])[:, 1]
            found["logistic"].append(fold_scores(y[held], prob, (prob >= threshold).astype(int)))
            share = float(np.mean(y[fit_rows]))  # the class-1 share: a constant probability
            constant = np.full(len(held), int(share > 0.5))
            found["majority"].append(fold_scores(y[held], np.full(len(held), share), constant))
        for name in listed:
            doc = json.loads((root / METRICS_DIR / "crossval" / f"{name}.json").read_text())
            where = f"crossval {name}"
            problems = [
                f"{k} {doc.get(k)} != {v}"
                for k, v in {
                    "dataset": dataset,
                    "folds": cv.folds,
                    "repeats": cv.repeats,
                    "rows": len(y),
                }.items()
                if doc.get(k) != v
            ]
            diffs.failed += [f"{where}: {p}" for p in problems]
            for model, per_fold in found.items():
                for metric in per_fold[0]:
                    values = [fold[metric] for fold in per_fold]
                    stats, key = doc[model][metric], f"cv/{model}/{metric}"
                    diffs.add(where, f"{key}/mean", stats["mean"], statistics.mean(values))
                    diffs.add(where, f"{key}/sd", stats["sd"], statistics.stdev(values))
            net = doc.get("variant", {})
            missing = [m for m in ("auc", "balanced_accuracy", "accuracy") if m not in net]
            if missing:
                diffs.failed.append(f"{where}: the variant's {missing} missing")
            network = ", ".join(f"{m} {net[m]['mean']}" for m in net if net[m]["mean"] is not None)
            lines.append(
                f"{where}: logistic and majority refitted on {cv.folds} x {cv.repeats} folds:"
                f" {diffs.summary()}; network (not refitted): {network}"
            )
    return lines
