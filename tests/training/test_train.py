"""study.training.train: best/last models, history, and fast settings that keep the numbers."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import tiny_fashion

from study.config.errors import StageError
from study.training.fitting import configure_tf
from study.training.train import best_epoch, history_csv, train_model


def fit(cfg, out, extra=None):
    configure_tf(seed=7, deterministic=True, threads=1)
    train, val = tiny_fashion()
    return train_model(cfg, train, val, out, out / "work", None, extra, seed=7)


def test_train_writes_best_and_last_and_history(variant, tmp_path):
    result = fit(variant("dropout", epochs=4, batch_size=16), tmp_path)
    assert (tmp_path / "best.keras").is_file() and (tmp_path / "last.keras").is_file()
    assert result.epochs_run == 4 and len(result.history["val_loss"]) == 4
    assert result.best_epoch == int(np.argmin(result.history["val_loss"])) + 1
    best = keras.saving.load_model(tmp_path / "best.keras")
    _, val = tiny_fashion()
    loss = best.evaluate(val[0], val[1], verbose=0, return_dict=True)["loss"]
    assert np.isclose(loss, min(result.history["val_loss"]), rtol=1e-5)
    csv = history_csv(result.history).splitlines()
    assert csv[0] == "epoch,loss,accuracy,val_loss,val_accuracy" and len(csv) == 5
    first = [float(v) for v in csv[1].split(",")]
    assert first == [1.0, *(result.history[k][0] for k in csv[0].split(",")[1:])]


def test_early_stopping_stops(variant, tmp_path):
    # lr 0 never improves val_loss after epoch 1, so patience 2 stops at epoch 3
    opt = {"name": "adam", "learning_rate": 0.0}
    cfg = variant("baseline", epochs=10, batch_size=16, patience=2, optimizer=opt)
    result = fit(cfg, tmp_path)
    assert result.epochs_run == 3 and result.best_epoch == 1


def test_steps_per_execution_gives_the_same_weights(variant, tmp_path):
    """The speed setting runs the same updates: final weights are bit-identical."""
    weights = []
    for spe in (1, 5):
        fit(
            variant("dropout", epochs=4, batch_size=16, steps_per_execution=spe),
            tmp_path / str(spe),
        )
        model = keras.saving.load_model(tmp_path / str(spe) / "last.keras")
        weights.append(model.get_weights())
    for a, b in zip(*weights, strict=True):
        np.testing.assert_array_equal(a, b)


class PoisonAfter(keras.callbacks.Callback):
    """Sets every weight to NaN after `epoch` epochs: the next epoch's losses are NaN."""

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            self.model.set_weights([np.full_like(w, np.nan) for w in self.model.get_weights()])


def test_nan_val_loss_stops_training_and_is_never_the_best_epoch(variant, tmp_path):
    cfg = variant("dropout", epochs=6, batch_size=16, patience=6)
    result = fit(cfg, tmp_path, [PoisonAfter(2)])
    assert result.epochs_run == 3 and np.isnan(result.history["val_loss"][2])  # TerminateOnNaN
    assert result.best_epoch == best_epoch(result.history["val_loss"][:2])
    best = keras.saving.load_model(tmp_path / "best.keras")
    _, val = tiny_fashion()
    loss = best.evaluate(val[0], val[1], verbose=0, return_dict=True)["loss"]
    assert np.isclose(loss, result.history["val_loss"][result.best_epoch - 1], rtol=1e-5)


def test_best_epoch_skips_nan_and_inf():
    assert best_epoch([0.5, 0.4, float("nan"), 0.45]) == 2
    assert best_epoch([float("inf"), 0.7, float("nan")]) == 2
    with pytest.raises(StageError, match="val_loss was never finite"):
        best_epoch([float("nan"), float("nan")])
