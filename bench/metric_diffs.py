"""Reported against recomputed figures (bench/check_metrics.py, bench/check_crossval.py): the
difference allowed per metric, and the tally of the largest differences and the mismatches."""

from __future__ import annotations

from typing import Any

import numpy as np

# |reported - recomputed| allowed: metrics files hold 6 digits; the data loss differs in how
# predictions are clipped away from 0 and 1 (Keras: 1e-7; scikit-learn: float32's eps).
# Dead and saturated fractions: an activation at the threshold may fall on either side in
# float32 (the model) and float64 (the checks).
TOLERANCE = {"loss": 1e-4, "fraction": 1e-4}
EXACT = 2e-6  # everything else computed on the test split or the folds
VAL_TOLERANCE = 2e-4  # best_val_loss, best_val_accuracy: Keras' streaming float32 mean


def tolerance(metric: str) -> float:
    """The allowed difference of a metric ("best/loss", "seeds/last_loss/mean", ...)."""
    if metric.startswith("best_val_"):
        return VAL_TOLERANCE
    for part, allowed in TOLERANCE.items():
        if part in metric:
            return allowed
    return EXACT


def kind(metric: str) -> str:
    """A metric's family for the largest-difference line: "best/loss" and "last/loss" are
    "loss", "best/dead_fraction/hidden_1" "dead_fraction", "seeds/best_loss/sd" "seeds/loss",
    "cv/logistic/auc/mean" "cv/logistic/auc"."""
    parts = metric.split("/")
    if parts[0] in ("best", "last"):
        return parts[1]
    if parts[0] == "seeds":
        return f"seeds/{parts[1].split('_', 1)[1]}"
    if parts[0] == "cv":
        return "/".join(parts[:3])
    return metric


class Diffs:
    """The largest |reported - recomputed| per metric, and the metrics out of tolerance."""

    def __init__(self) -> None:
        self.worst: dict[str, float] = {}
        self.failed: list[str] = []
        self.compared = 0
        self.scope: list[tuple[str, float]] = []  # since the last summary()

    def add(self, where: str, metric: str, reported: Any, mine: float) -> None:
        if reported is None or not np.isfinite(mine):  # a diverged model's: null both ways
            if (reported is None) != (not np.isfinite(mine)):
                self.failed.append(f"{where} {metric}: reported {reported} vs {mine}")
            return
        diff = abs(float(reported) - float(mine))
        self.compared += 1
        self.scope.append((metric, diff))
        family = kind(metric)
        self.worst[family] = max(self.worst.get(family, 0.0), diff)
        if diff > tolerance(metric):
            self.failed.append(f"{where} {metric}: reported {reported} vs {mine:.6f}")

    def summary(self) -> str:
        """How many figures were compared since the last call, and the largest difference."""
        scope, self.scope = self.scope, []
        if not scope:
            return "nothing compared"
        metric, diff = max(scope, key=lambda item: item[1])
        return f"{len(scope)} figures, largest |diff| {diff:.1e} ({metric})"
