"""Figures an evaluation logs to MLflow (DVC draws its own confusion plot from the CSV)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI

import numpy as np
from matplotlib.figure import Figure


def confusion_matrix_figure(y: np.ndarray, pred: np.ndarray, n_classes: int, title: str) -> Figure:
    """Counts of (actual, predicted) on the test split."""
    from sklearn.metrics import ConfusionMatrixDisplay

    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
    ConfusionMatrixDisplay.from_predictions(
        y, pred, labels=list(range(n_classes)), ax=ax, colorbar=False
    )
    ax.set_title(title)
    # Fixed margins: tight_layout's search costs as much as drawing the figure.
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.11, top=0.93)
    return fig
