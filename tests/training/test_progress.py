"""study.training.progress: one flushed line per epoch, with Keras's epoch number and History
values."""

from __future__ import annotations

import io
import math
import re

import keras
import numpy as np
import pytest

from study.training.progress import EpochProgress

LINE = re.compile(r"train tiny: epoch (\d+)/(\d+) (.*) (\d+\.\d)s")


def tiny_fit(stream: io.StringIO, epochs: int, *callbacks) -> keras.callbacks.History:
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(0)
    x, y = rng.random((50, 4), dtype=np.float32), rng.integers(0, 2, 50)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    progress = EpochProgress(epochs, stream=stream, label="train tiny")
    return model.fit(
        x[:40],
        y[:40],
        validation_data=(x[40:], y[40:]),
        epochs=epochs,
        batch_size=16,
        verbose=0,
        callbacks=[*callbacks, progress],
    )


def parse(text: str) -> list[tuple[int, int, dict[str, str], float]]:
    """(epoch, total, {metric: value}, seconds) per line; every line must match."""
    rows = []
    for line in text.splitlines():
        match = LINE.fullmatch(line)
        assert match, line
        epoch, total, values, seconds = match.groups()
        tokens = values.split(" ")
        pairs = dict(zip(tokens[::2], tokens[1::2], strict=True))
        rows.append((int(epoch), int(total), pairs, float(seconds)))
    return rows


def test_one_line_per_epoch_with_the_history_values():
    stream = io.StringIO()
    history = tiny_fit(stream, 2).history
    rows = parse(stream.getvalue())
    assert [(epoch, total) for epoch, total, _, _ in rows] == [(1, 2), (2, 2)]
    for i, (_, _, values, _) in enumerate(rows):
        assert list(values) == ["loss", "val_loss", "accuracy", "val_accuracy"]
        assert values == {k: f"{history[k][i]:.4f}" for k in values}
    assert 0 <= rows[0][3] <= rows[1][3]


class CrashAt(keras.callbacks.Callback):
    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("killed")


def test_a_run_resumed_by_backup_and_restore_counts_on(tmp_path):
    stream = io.StringIO()
    backup = keras.callbacks.BackupAndRestore(tmp_path / "backup")
    with pytest.raises(RuntimeError, match="killed"):
        tiny_fit(stream, 3, backup, CrashAt(2))
    tiny_fit(stream, 3, keras.callbacks.BackupAndRestore(tmp_path / "backup"))
    epochs = [(epoch, total) for epoch, total, _, _ in parse(stream.getvalue())]
    assert epochs == [(1, 3), (2, 3), (3, 3)]


def test_nan_inf_and_missing_values():
    stream = io.StringIO()
    progress = EpochProgress(30, stream=stream)
    progress.on_train_begin()
    progress.on_epoch_end(4, {"loss": math.nan, "val_loss": math.inf, "val_auc": 0.5})
    progress.on_epoch_end(5, None)
    lines = stream.getvalue().splitlines()
    assert re.fullmatch(r"epoch 5/30 loss nan val_loss inf val_auc 0\.5000 \d+\.\ds", lines[0])
    assert re.fullmatch(r"epoch 6/30 \d+\.\ds", lines[1])


def test_a_small_learning_rate_keeps_its_digits():
    stream = io.StringIO()
    progress = EpochProgress(30, stream=stream)
    progress.on_train_begin()
    progress.on_epoch_end(0, {"loss": 0.0, "accuracy": 0.91234, "learning_rate": 0.00016113})
    line = stream.getvalue()
    assert re.fullmatch(
        r"epoch 1/30 loss 0\.0000 accuracy 0\.9123 learning_rate 0\.000161 \S+\n", line
    )
