"""Cross-validation's references recomputed (bench/check_metrics.py runs this): the folds of
crossval.variants' datasets redrawn with scikit-learn's RepeatedStratifiedKFold on the raw
train + val rows, the logistic reference refitted on each fold's features as scikit-learn's
own encoders make them from its fit rows (prepare.<dataset>'s columns) and the majority class
counted, their mean and sd with the statistics module, compared with
metrics/crossval/<variant>.json. The network's folds are not refitted (its figures are only
checked to be there)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from bench.metric_diffs import Diffs
from study.config.paths import METRICS_DIR, RAW_DIR
from study.config.sections import ThoracicFeatures
from study.data.prepare import THORACIC_CSV, split_rows
from study.data.raw import read_thoracic_csv


def fold_scores(y: np.ndarray, prob: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score

    return {
        "auc": roc_auc_score(y, prob),
        "balanced_accuracy": balanced_accuracy_score(y, pred),
        "accuracy": accuracy_score(y, pred),
    }


def encoder(features: ThoracicFeatures, width: int) -> Any:
    """scikit-learn's encoding of prepare.<dataset>'s columns: one-hot, dropped, z-scored."""
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    onehot = list(features.one_hot_columns)
    other = [c for c in range(width) if c not in {*features.drop_columns, *onehot}]
    scale = StandardScaler() if features.standardize else "passthrough"
    category = OneHotEncoder(handle_unknown="ignore")
    return ColumnTransformer([("category", category, onehot), ("numeric", scale, other)])


def check_crossval(root: Path, params: Any, diffs: Diffs) -> list[str]:
    """metrics/crossval/<variant>.json of every cross-validated variant: the references."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import RepeatedStratifiedKFold
    from sklearn.pipeline import make_pipeline

    cv, threshold, lines = params.crossval, params.evaluate.threshold, []
    for dataset, listed in cv.variants.items():
        if not listed:
            continue
        raw_x, raw_y = read_thoracic_csv(root / RAW_DIR / THORACIC_CSV)
        rows = split_rows(raw_y, params.prepare.thoracic, params.seed)
        keep = np.concatenate([rows["train"], rows["val"]])  # the prepared train + val rows
        x, y = raw_x[keep], raw_y[keep]
        features = getattr(params.prepare, dataset)
        folds = RepeatedStratifiedKFold(
            n_splits=cv.folds, n_repeats=cv.repeats, random_state=params.seed
        ).split(x, y)
        found: dict[str, list[dict[str, float]]] = {"logistic": [], "majority": []}
        for fit_rows, held in folds:
            logistic = make_pipeline(
                encoder(features, x.shape[1]),
                LogisticRegression(
                    C=cv.logistic.C,
                    max_iter=cv.logistic.max_iter,
                    class_weight=cv.logistic.class_weight,
                ),
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
