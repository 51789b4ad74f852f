"""Scoring a model on test rows: data loss, regularization penalty, accuracy (AUC and
balanced accuracy for binary datasets); and the spread of such scores across seeds.

evaluate scores every variant's best and last models (and those of its other seeds) with it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

METRIC_DIGITS = 6  # rounding keeps metrics files stable and readable
# Scores the spread across seeds covers: the diagnostics and penalty are the main seed's only.
SPREAD_METRICS = ("accuracy", "loss", "auc", "balanced_accuracy")


def score_model(
    model: Any, x: np.ndarray, y: np.ndarray, cfg: dict[str, Any], eval_cfg: dict[str, Any]
) -> tuple[dict[str, float], np.ndarray]:
    """Test loss, penalty, accuracy (plus AUC and balanced accuracy for thoracic), predictions.

    `loss` is the data loss alone: the variant's loss function on the predictions.
    model.evaluate() adds the model's own regularization terms (L2 kernel, L1 activity),
    which would rank regularized variants by their penalty; that part is `penalty`.
    (evaluate()'s graph also rounds differently: 0.47372 vs 0.47348 for the baseline's
    best model on the real test split, which has no penalty at all; sklearn: 0.47346.)
    """
    import keras
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score

    from stages.model import binary, class_probabilities, encode_labels

    batch = eval_cfg["batch_size"]
    target = encode_labels(y, cfg)
    outputs = model.predict(x, batch_size=batch, verbose=0)
    per_example = keras.losses.get(cfg["loss"])(target, outputs)
    data_loss = float(np.mean(keras.ops.convert_to_numpy(per_example)))
    probs = class_probabilities(outputs, cfg)
    if binary(cfg["dataset"]):
        pred = (probs[:, 1] >= eval_cfg["threshold"]).astype(np.int64)
    else:
        pred = probs.argmax(axis=1)
    scores = {
        "loss": data_loss,
        "penalty": regularization_penalty(model, x, batch),
        "accuracy": float(accuracy_score(y, pred)),
    }
    if binary(cfg["dataset"]):
        # AUC is undefined on a one-class split; NaN would break JSON, so leave it out.
        if len(np.unique(y)) == 2:
            scores["auc"] = float(roc_auc_score(y, probs[:, 1]))
        scores["balanced_accuracy"] = float(balanced_accuracy_score(y, pred))
    return {k: round(v, METRIC_DIGITS) for k, v in scores.items()}, pred


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
    return {
        "mean": round(float(arr.mean()), METRIC_DIGITS),
        "sd": round(float(sd), METRIC_DIGITS),
        "values": [round(float(v), METRIC_DIGITS) for v in arr],
    }


def seeds_spread(runs: dict[int, dict[str, dict[str, float]]]) -> dict[str, Any]:
    """runs: seed -> {"last": scores, "best": scores}. The seeds in order, and per checkpoint
    and metric of SPREAD_METRICS that every run has ("best_accuracy", ...) its spread()."""
    seeds = sorted(runs)
    out: dict[str, Any] = {"seeds": seeds}
    for which in ("last", "best"):
        for metric in SPREAD_METRICS:
            if all(metric in runs[s][which] for s in seeds):
                out[f"{which}_{metric}"] = spread([runs[s][which][metric] for s in seeds])
    return out
