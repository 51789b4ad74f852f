"""Matplotlib figures logged to MLflow runs (DVC renders its own from the CSV plots)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure


def learning_curves(history: dict[str, list[float]], best_epoch: int, title: str) -> Figure:
    """Train vs validation loss and accuracy per epoch, with the best epoch marked."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    epochs = np.arange(1, len(history["loss"]) + 1)
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        ax.plot(epochs, history[metric], label=f"train {metric}")
        ax.plot(epochs, history[f"val_{metric}"], label=f"val {metric}")
        ax.axvline(best_epoch, color="grey", linestyle="--", label=f"best epoch {best_epoch}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def confusion_matrix_figure(y: np.ndarray, pred: np.ndarray, n_classes: int, title: str) -> Figure:
    """Counts of (actual, predicted) on the test split."""
    from sklearn.metrics import ConfusionMatrixDisplay

    fig, ax = plt.subplots(figsize=(6, 5))
    ConfusionMatrixDisplay.from_predictions(
        y, pred, labels=list(range(n_classes)), ax=ax, colorbar=False
    )
    ax.set_title(title)
    fig.tight_layout()
    return fig


def save(fig: Figure, path, dpi: int = 100) -> None:
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
