"""bench/xla.py: its tables (reports/xla.md) against numpy; the benchmark itself is too
slow for the suite."""

from __future__ import annotations

import numpy as np
import pytest

from bench import xla


def test_xla_tables_against_numpy():
    # Two seeds of one variant, plain and XLA: figures as reports/xla.md shows them.
    def run(val: float, test: float, weights: int) -> dict:
        return {"val_accuracy": val, "test_accuracy": test, "weights": weights}

    runs = {
        ("v", 1, False): run(0.50, 0.40, 1),
        ("v", 1, True): run(0.52, 0.41, 1),
        ("v", 2, False): run(0.60, 0.45, 2),
        ("v", 2, True): run(0.60, 0.47, 3),
    }
    rows = [line.split(" | ") for line in xla.accuracy_table(runs)[2:]]
    plain, jit = np.array([[0.50, 0.40], [0.60, 0.45]]), np.array([[0.52, 0.41], [0.60, 0.47]])
    for column, row in enumerate(rows):
        figures = [float(f) for f in row[2:6]]
        expected = [plain[:, column].mean(), jit[:, column].mean()]
        expected += [np.abs(jit - plain)[:, column].mean(), plain[:, column].std(ddof=1)]
        assert figures == pytest.approx(expected, abs=5e-5), (row, expected)
        assert row[6] == "False |"  # seed 2's weights differ
    seconds = {("t", False): [1.0, 3.0, 2.0], ("t", True): [2.0, 2.5, 9.0]}
    (row,) = xla.time_table(seconds)[2:]
    assert row == f"| t | 3 | 2.00 | 2.50 | {np.median([2, 2.5, 9]) / np.median([1, 3, 2]):.2f} |"
