"""Live training progress: one flushed line per epoch, readable in a non-interactive log."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import keras


class EpochProgress(keras.callbacks.Callback):
    """Print `<label>: epoch 3/30 loss 0.4123 val_loss 0.4456 ... 12.3s` after every epoch.

    The epoch number is Keras's own (1-based), so a run resumed by BackupAndRestore counts
    on from where it stopped; the time is seconds since this process started training.
    loss first, each metric followed by its val_ counterpart; NaN and inf print as nan and inf.
    stream defaults to sys.stdout as it is when a line is printed (DVC logs stage stdout).
    """

    def __init__(self, total_epochs: int, stream: TextIO | None = None, label: str = "") -> None:
        super().__init__()
        self.total_epochs = total_epochs
        self.stream = stream
        self.prefix = f"{label}: " if label else ""
        self.start = time.perf_counter()

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        names = sorted((k for k in logs if not k.startswith("val_")), key=lambda k: k != "loss")
        names = [n for k in names for n in (k, f"val_{k}") if n in logs]
        names += [k for k in logs if k not in names]  # val_ metrics without a train one
        seconds = time.perf_counter() - self.start
        parts = [f"{self.prefix}epoch {epoch + 1}/{self.total_epochs}"]
        parts += [f"{k} {_number(logs[k])}" for k in names]
        print(" ".join([*parts, f"{seconds:.1f}s"]), file=self.stream or sys.stdout, flush=True)


def _number(value: Any) -> str:
    """4 decimals, 3 significant digits below 0.001 (a learning rate: 0.000161); nan, inf as
    such; anything not a number as it is: never fail training."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{number:.3g}" if 0 < abs(number) < 1e-3 else f"{number:.4f}"
