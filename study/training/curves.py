"""A training's learning curves as a figure for its MLflow run (DVC draws its own from the
history CSV)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI

import numpy as np
from matplotlib.figure import Figure


def learning_curves(history: dict[str, list[float]], best_epoch: int, title: str) -> Figure:
    """Train vs validation loss and accuracy per epoch, with the best epoch marked."""
    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    epochs = np.arange(1, len(history["loss"]) + 1)
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        ax.plot(epochs, history[metric], label=f"train {metric}")
        ax.plot(epochs, history[f"val_{metric}"], label=f"val {metric}")
        ax.axvline(best_epoch, color="grey", linestyle="--", label=f"best epoch {best_epoch}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.legend()
    fig.suptitle(title)
    # Fixed margins: tight_layout's search costs as much as drawing the figure.
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.12, top=0.88, wspace=0.25)
    return fig
