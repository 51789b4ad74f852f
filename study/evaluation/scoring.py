"""Scoring a model on held-out rows: data loss, regularization penalty, accuracy (AUC and
balanced accuracy for binary datasets); and the spread of such scores across seeds.

A diverged model (non-finite outputs) still gets a score: its accuracy is what its predictions
give, the scores that need finite outputs are null with the reason beside them, and
`diverged` is true. Metrics files stay valid JSON (study.io.files.finite: never NaN or inf).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from study.config.variant import Variant
from study.io.files import finite
from study.training.model import binary, class_probabilities, encode_labels

# Scores the spread across seeds covers: the diagnostics and penalty are the first seed's only.
SPREAD_METRICS = ("accuracy", "loss", "auc", "balanced_accuracy")
DIVERGED = "the model's outputs are not finite (its training diverged)"


def score_model(
    model: Any, x: np.ndarray, y: np.ndarray, cfg: Variant, batch_size: int, threshold: float
) -> tuple[dict[str, Any], np.ndarray]:
    """Loss, penalty, accuracy (plus AUC and balanced accuracy for binary data), predictions.

    `loss` is the data loss alone: the variant's loss function on the predictions.
    model.evaluate() adds the model's own regularization terms (L2 kernel, L1 activity),
    which would rank regularized variants by their penalty; that part is `penalty`.
    (evaluate()'s graph also rounds differently: 0.47372 vs 0.47348 for the baseline's
    best model on the real test split, which has no penalty at all; sklearn: 0.47346.)
    """
    outputs = model.predict(x, batch_size=batch_size, verbose=0)
    return score_outputs(model, outputs, x, y, cfg, batch_size, threshold)


def score_outputs(
    model: Any,
    outputs: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    cfg: Variant,
    batch_size: int,
    threshold: float,
) -> tuple[dict[str, Any], np.ndarray]:
    """score_model's scores of the model's `outputs` on x (the penalty needs the model)."""
    import keras
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score

    target = encode_labels(y, cfg)
    per_example = keras.losses.get(cfg.loss)(target, outputs)
    data_loss = float(np.mean(keras.ops.convert_to_numpy(per_example)))
    probs = class_probabilities(outputs, cfg)
    if binary(cfg.dataset):
        pred = (probs[:, 1] >= threshold).astype(np.int64)
    else:
        pred = probs.argmax(axis=1)
    scores: dict[str, Any] = {
        "loss": data_loss,
        "penalty": regularization_penalty(model, x, batch_size),
        "accuracy": float(accuracy_score(y, pred)),
    }
    diverged = not np.isfinite(outputs).all()
    if binary(cfg.dataset):
        if diverged:
            scores |= {"auc": None, "auc_undefined": DIVERGED}
        elif len(np.unique(y)) < 2:
            scores |= {"auc": None, "auc_undefined": "the rows hold one class only"}
        else:
            scores["auc"] = float(roc_auc_score(y, probs[:, 1]))
        scores["balanced_accuracy"] = float(balanced_accuracy_score(y, pred))
    if diverged:
        scores["diverged"] = True
    return finite(scores), pred


def regularization_penalty(model: Any, x: np.ndarray, batch: int) -> float:
    """Mean over the batches of x of the model's regularization losses (what Keras adds to
    the data loss in training and evaluate): L2 kernel terms, and L1 activity terms of the
    batch's activations. 0.0 for a model without regularizers."""
    import keras

    total = 0.0
    for start in range(0, len(x), batch):
        rows = x[start : start + batch]
        model(rows, training=False)  # the activity regularizers see this batch
        terms = [float(keras.ops.convert_to_numpy(term)) for term in model.losses]
        total += sum(terms) * len(rows)
    return total / len(x)


def spread(values: list[float]) -> dict[str, Any]:
    """Mean, sample standard deviation (ddof 1; 0.0 for one value) and the values."""
    arr = np.asarray(values, dtype=float)
    sd = arr.std(ddof=1) if len(arr) > 1 else 0.0
    return finite({"mean": float(arr.mean()), "sd": float(sd), "values": list(arr)})


def seeds_spread(runs: dict[int, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """runs: seed -> {"last": scores, "best": scores}. The seeds in order, and per checkpoint
    and metric of SPREAD_METRICS that every run has a finite value of ("best_accuracy", ...)
    its spread()."""
    seeds = sorted(runs)
    out: dict[str, Any] = {"seeds": seeds}
    for which in ("last", "best"):
        for metric in SPREAD_METRICS:
            values = [runs[s][which].get(metric) for s in seeds]
            if all(v is not None for v in values):
                out[f"{which}_{metric}"] = spread(values)
    return out
