"""study.reports.paired: the Nadeau-Bengio corrected resampled t-test of two models' scores on
the same folds, checked against scipy's paired t-test with the correction applied to it, and
the rule the report states (beats / is below / is not distinguishable from)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from study.reports.paired import ALPHA, corrected_ttest, relation

A = [0.74, 0.66, 0.72, 0.68, 0.70, 0.73, 0.67, 0.71, 0.69, 0.70]
B = [0.62, 0.63, 0.60, 0.64, 0.61, 0.66, 0.58, 0.63, 0.62, 0.65]


@pytest.mark.parametrize("folds", [5, 10])
def test_the_corrected_test_is_scipys_paired_t_with_the_variance_inflated(folds):
    """scipy's ttest_rel divides the mean difference by sqrt(var / n); the correction by
    sqrt((1/n + 1/(k-1)) var): the same t shrunk by sqrt((1/n) / (1/n + 1/(k-1))), p from
    Student's t on n - 1 degrees of freedom, two-sided."""
    n = len(A)
    plain = stats.ttest_rel(A, B)
    t = plain.statistic * np.sqrt((1 / n) / (1 / n + 1 / (folds - 1)))
    test = corrected_ttest(A, B, folds)
    assert test.n == n
    assert test.mean == pytest.approx(np.mean(np.subtract(A, B)), abs=1e-12)
    assert test.t == pytest.approx(t, rel=1e-9)
    assert test.p == pytest.approx(2 * stats.t.sf(abs(t), n - 1), rel=1e-9)
    assert test.p > plain.pvalue  # the correction is more cautious than the plain test
    swapped = corrected_ttest(B, A, folds)
    assert (swapped.mean, swapped.t, swapped.p) == pytest.approx((-test.mean, -test.t, test.p))


def test_the_correction_on_a_hand_computed_case():
    """Differences 0.1, 0.2, 0.3 on 3 folds of a 3-fold CV: mean 0.2, var 0.01,
    t = 0.2 / sqrt((1/3 + 1/2) * 0.01) = sqrt(4.8); on 2 df the two-sided p is closed-form,
    1 - t / sqrt(t^2 + 2) = 1 - sqrt(4.8 / 6.8) = 0.159832."""
    test = corrected_ttest([0.6, 0.7, 0.8], [0.5, 0.5, 0.5], folds=3)
    expected = (0.2, np.sqrt(4.8), 1 - np.sqrt(4.8 / 6.8))
    assert (test.mean, test.t, test.p) == pytest.approx(expected, abs=1e-9)


def test_equal_differences_have_no_spread():
    assert corrected_ttest([0.5] * 5, [0.5] * 5, 5)[1:3] == (0.0, 1.0)
    same = corrected_ttest([0.6] * 5, [0.5] * 5, 5)
    assert same.t == np.inf and same.p == 0.0


def test_the_rule_is_the_sign_of_the_difference_at_alpha():
    assert relation(0.05, ALPHA / 2) == "beats"
    assert relation(-0.05, ALPHA / 2) == "is below"
    assert relation(0.05, ALPHA) == "is not distinguishable from"
    assert relation(0.05, 0.4) == "is not distinguishable from"
    assert relation(None, None) == "cannot be compared with"  # a fold diverged
