"""Callbacks that interrupt a fit as a kill would (KeyboardInterrupt: Keras runs no
on_train_end, so the backup and the training state stay on disk)."""

from __future__ import annotations

import shutil
from pathlib import Path

import keras


class CrashAtStart(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        raise KeyboardInterrupt("killed before the first epoch ended")


class Crash(keras.callbacks.Callback):
    """Raises after `epoch` epochs, after the other callbacks have saved their state."""

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise KeyboardInterrupt("simulated crash")


class CopyAfter(keras.callbacks.Callback):
    """Copies the training's work dir after each epoch in `copies` ({epoch: destination}), after
    the other callbacks have saved their state: what a kill right then leaves on disk, without
    another training per kill."""

    def __init__(self, work: Path, copies: dict[int, Path]) -> None:
        super().__init__()
        self.work, self.copies = work, copies

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 in self.copies:
            shutil.copytree(self.work, self.copies[epoch + 1])
