"""Cross-validation of a binary variant on its dataset's non-test rows (the crossval stages):
the variant refitted on every fold, beside a logistic regression and the majority class
scored on the same folds; per metric each fold's score, and their mean and sd.

The folds start from the raw features: each fold's are encoded as prepare encodes a split
(study.data.prepare.encode_features: one-hot categories and z-score statistics), fitted on
that fold's fit rows only, so no held-out row shapes the features the models train on."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from study.config.errors import ConfigError
from study.config.sections import Crossval, Logistic, Prepare, ThoracicFeatures
from study.config.variant import Variant
from study.data.prepare import THORACIC_CSV, encode_features, split_rows
from study.data.raw import read_thoracic_csv
from study.io.files import finite
from study.training.fitting import fit
from study.training.model import build_model, class_probabilities

METRICS = ("auc", "balanced_accuracy", "accuracy")
Splits = list[tuple[np.ndarray, np.ndarray]]
# Per fold: the features of its fit rows and of its held-out rows, encoded on the fit rows.
Folds = list[tuple[np.ndarray, np.ndarray]]


def non_test_rows(raw: Path, prepare: Prepare, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows cross-validation splits, with their raw features: prepare's train rows, then
    its val rows (prepare.thoracic's split with `seed`; never test), in the prepared files'
    order, so the folds are the ones drawn on those files."""
    x, y = read_thoracic_csv(raw / THORACIC_CSV)
    rows = split_rows(y, prepare.thoracic, seed)
    keep = np.concatenate([rows["train"], rows["val"]])
    return x[keep], y[keep]


def encoded_folds(x: np.ndarray, splits: Splits, features: ThoracicFeatures, key: str) -> Folds:
    """Each fold's (fit rows, held-out rows) features, as prepare's encode_features makes a
    split's with the fold's fit rows as its train rows (`key`: the features' params key)."""
    out = []
    for fit_rows, held in splits:
        xs = encode_features(x, {"train": fit_rows, "held": held}, features, key)
        out.append((xs["train"], xs["held"]))
    return out


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


def summarize(per_fold: list[dict[str, float | None]]) -> dict[str, dict[str, Any]]:
    """Per metric each fold's score (`folds`, in the splits' order: the paired comparison of
    the report pairs them by position), their mean and sample standard deviation (ddof 1);
    mean and sd None when a fold has none."""
    out = {}
    for name in METRICS:
        values = [fold[name] for fold in per_fold]
        if any(v is None for v in values):
            out[name] = {"mean": None, "sd": None, "folds": values}
            continue
        arr = np.array(values)
        sd = arr.std(ddof=1) if len(arr) > 1 else 0.0
        out[name] = {"mean": float(arr.mean()), "sd": float(sd), "folds": values}
    return out


def _fresh(cfg: Variant, width: int, jit: bool) -> tuple[Any, list[Any], list[np.ndarray]]:
    """A model for `width` features, its variables and optimizer state, and their values."""
    import keras

    model = build_model(cfg, (width,), jit)  # its optimizer built
    state = [*model.variables, *model.optimizer.variables]
    return model, state, [keras.ops.convert_to_numpy(v) for v in state]


def variant_folds(
    cfg: Variant,
    folds: Folds,
    y: np.ndarray,
    splits: Splits,
    threshold: float,
    on_fold: Callable[[int, float], None] | None = None,
    jit_compile: bool = False,
    *,
    seed: int,
) -> list[dict[str, float | None]]:
    """The variant's scores on each fold's held-out rows, trained on its fit rows as the train
    stage trains it (study.training.fitting: its config and class weights, for its `epochs`,
    its batches in an order of seed and epoch; no early stopping, so the held-out rows are
    never watched).

    One model per feature count (a category missing from a fold's fit rows has no column
    there), reset before every fold to the weights, optimizer and dropout-seed state it was
    built with: the same fit as a freshly built model's (tests/crossval/test_folds.py),
    without tracing TF's graphs again per fold."""
    import keras

    models: dict[int, tuple[Any, list[Any], list[np.ndarray]]] = {}
    out = []
    for i, ((x_fit, x_held), (fit_rows, held)) in enumerate(zip(folds, splits, strict=True)):
        start = time.perf_counter()
        width = x_fit.shape[1]
        if width not in models:
            models[width] = _fresh(cfg, width, jit_compile)
        model, state, initial = models[width]
        for variable, value in zip(state, initial, strict=True):
            variable.assign(value)
        fit(model, cfg, (x_fit, y[fit_rows]), seed=seed)
        outputs = keras.ops.convert_to_numpy(model(x_held, training=False))
        # To 6 digits, as every score: no result hangs on float noise below that.
        prob = np.array([round(float(p), 6) for p in class_probabilities(outputs, cfg)[:, 1]])
        out.append(fold_scores(y[held], prob, prob >= threshold))
        if on_fold is not None:
            on_fold(i, time.perf_counter() - start)
    return out


def reference_folds(
    folds: Folds, y: np.ndarray, splits: Splits, logistic: Logistic, seed: int, threshold: float
) -> dict[str, list[dict[str, float | None]]]:
    """On the same folds and features: crossval.logistic's LogisticRegression (class 1 at
    >= threshold), and the majority class of each fold's fit rows (its share of them as the
    probability)."""
    from sklearn.linear_model import LogisticRegression

    out: dict[str, list] = {"logistic": [], "majority": []}
    for (x_fit, x_held), (fit_rows, held) in zip(folds, splits, strict=True):
        model = LogisticRegression(**logistic.model_dump(), random_state=seed)
        prob = model.fit(x_fit, y[fit_rows]).predict_proba(x_held)[:, 1]
        out["logistic"].append(fold_scores(y[held], prob, prob >= threshold))
        share = y[fit_rows].mean()
        constant = np.full(len(held), share)
        majority = np.full(len(held), int(share > 0.5))
        out["majority"].append(fold_scores(y[held], constant, majority))
    return out


def crossval_scores(
    cfg: Variant,
    data: tuple[np.ndarray, np.ndarray],
    features: ThoracicFeatures,
    cv: Crossval,
    seed: int,
    threshold: float,
    on_fold: Callable[[int, float], None] | None = None,
    jit_compile: bool = False,
) -> dict[str, Any]:
    """metrics/crossval/<variant>.json: the folds, and per model (variant, logistic,
    majority) and metric (AUC, balanced accuracy, accuracy) the score of each fold and their
    mean and sd. `data`: the raw non-test rows; `features`: prepare.<cfg.dataset>'s encoding,
    fitted per fold; the variant's steps XLA-compiled if jit_compile."""
    x, y = data
    splits = cv_splits(y, cv.folds, cv.repeats, seed)
    folds = encoded_folds(x, splits, features, f"prepare.{cfg.dataset}")
    scores = variant_folds(cfg, folds, y, splits, threshold, on_fold, jit_compile, seed=seed)
    references = reference_folds(folds, y, splits, cv.logistic, seed, threshold)
    doc = {"dataset": cfg.dataset, "folds": cv.folds, "repeats": cv.repeats, "rows": len(y)}
    doc["variant"] = summarize(scores)
    doc |= {name: summarize(per_fold) for name, per_fold in references.items()}
    return finite(doc)
