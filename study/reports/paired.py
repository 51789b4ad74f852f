"""Paired comparison of two models' scores on the same cross-validation folds: the
Nadeau-Bengio corrected resampled t-test (Nadeau & Bengio 2003, "Inference for the
generalization error", Machine Learning 52).

k-fold training sets overlap, so the per-fold differences are correlated and the plain paired
t-test (scipy.stats.ttest_rel) understates their variance and calls too many differences
significant. The correction inflates the variance of the mean difference from var/n to
(1/n + n_held/n_fit) * var, with n_held/n_fit = 1/(k - 1) for k-fold cross-validation
(repeated or not); the statistic is then compared with Student's t on n - 1 degrees of
freedom, two-sided."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

# The significance level of the report's "beats" / "is below" (two-sided).
ALPHA = 0.05


class Paired(NamedTuple):
    """Mean of the per-fold differences (a - b), the corrected t statistic and its two-sided
    p-value; n the number of folds paired."""

    mean: float
    t: float
    p: float
    n: int


def corrected_ttest(a: Sequence[float], b: Sequence[float], folds: int) -> Paired:
    """a vs b paired fold by fold (the same >= 2 folds of a `folds`-fold cross-validation, all
    its repeats): the Nadeau-Bengio corrected resampled t-test. With every difference equal, t is
    0 with p 1 when they are 0, else +-inf with p 0."""
    from scipy import stats

    diffs = [x - y for x, y in zip(a, b, strict=True)]
    n = len(diffs)
    mean = math.fsum(diffs) / n
    var = math.fsum((d - mean) ** 2 for d in diffs) / (n - 1)
    scale = math.sqrt((1 / n + 1 / (folds - 1)) * var)
    if scale == 0:  # every difference equal: no spread to test against
        return Paired(mean, 0.0, 1.0, n) if mean == 0 else Paired(mean, math.inf * mean, 0.0, n)
    t = mean / scale
    return Paired(mean, t, float(2 * stats.t.sf(abs(t), n - 1)), n)


def relation(diff: float | None, p: float | None) -> str:
    """How a model stands to another from their paired test (mean difference `diff`, its
    p-value `p`): "beats" (diff > 0 at p < ALPHA), "is below" (diff < 0 at p < ALPHA), else
    "is not distinguishable from"; "cannot be compared with" without a test (a fold
    diverged)."""
    if diff is None or p is None:
        return "cannot be compared with"
    if p < ALPHA:
        return "beats" if diff > 0 else "is below"
    return "is not distinguishable from"
