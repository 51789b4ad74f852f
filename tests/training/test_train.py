"""stages.train: best/last models, history, and fast settings that keep the numbers."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import thoracic_rows, tiny_fashion

from stages.fitting import class_weights
from stages.params import StageError, resolve_variant
from stages.train import best_epoch, configure_tf, flat_config, history_csv, train_model


def fit(params, variant, tmp_path, **overrides):
    cfg = {**resolve_variant(params, variant), "epochs": 4, "batch_size": 16, **overrides}
    configure_tf(seed=7, deterministic=True, threads=1)
    train, val = tiny_fashion()
    return cfg, train_model(cfg, train, val, tmp_path, tmp_path / "work")


def test_train_writes_best_and_last_and_history(params, tmp_path):
    _, result = fit(params, "dropout", tmp_path)
    assert (tmp_path / "best.keras").is_file() and (tmp_path / "last.keras").is_file()
    assert result.epochs_run == 4 and len(result.history["val_loss"]) == 4
    assert result.best_epoch == int(np.argmin(result.history["val_loss"])) + 1
    best = keras.saving.load_model(tmp_path / "best.keras")
    _, val = tiny_fashion()
    loss = best.evaluate(val[0], val[1], verbose=0, return_dict=True)["loss"]
    assert np.isclose(loss, min(result.history["val_loss"]), rtol=1e-5)
    csv = history_csv(result.history).splitlines()
    assert csv[0] == "epoch,loss,accuracy,val_loss,val_accuracy" and len(csv) == 5


def test_early_stopping_stops(params, tmp_path):
    # lr 0 never improves val_loss after epoch 1, so patience 2 stops at epoch 3
    opt = {"name": "adam", "learning_rate": 0.0}
    _, result = fit(params, "baseline", tmp_path, epochs=10, patience=2, optimizer=opt)
    assert result.epochs_run == 3 and result.best_epoch == 1


def test_steps_per_execution_gives_the_same_weights(params, tmp_path):
    """The speed setting runs the same updates: final weights are bit-identical."""
    weights = []
    for spe in (1, 5):
        fit(params, "dropout", tmp_path / str(spe), steps_per_execution=spe)
        model = keras.saving.load_model(tmp_path / str(spe) / "last.keras")
        weights.append(model.get_weights())
    for a, b in zip(*weights, strict=True):
        np.testing.assert_array_equal(a, b)


def test_flat_config_for_mlflow_params(params):
    flat = flat_config(resolve_variant(params, "adam_beta"))
    assert flat["variant.optimizer.beta_1"] == "0.89" and flat["variant.units"] == "64"


class PoisonAfter(keras.callbacks.Callback):
    """Sets every weight to NaN after `epoch` epochs: the next epoch's losses are NaN."""

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            self.model.set_weights([np.full_like(w, np.nan) for w in self.model.get_weights()])


def test_nan_val_loss_stops_training_and_is_never_the_best_epoch(params, tmp_path):
    cfg = {**resolve_variant(params, "dropout"), "epochs": 6, "batch_size": 16, "patience": 6}
    configure_tf(seed=7, deterministic=True, threads=1)
    train, val = tiny_fashion()
    result = train_model(cfg, train, val, tmp_path, tmp_path / "work", None, [PoisonAfter(2)])
    assert result.epochs_run == 3 and np.isnan(result.history["val_loss"][2])  # TerminateOnNaN
    assert result.best_epoch == best_epoch(result.history["val_loss"][:2])
    best = keras.saving.load_model(tmp_path / "best.keras")
    loss = best.evaluate(val[0], val[1], verbose=0, return_dict=True)["loss"]
    assert np.isclose(loss, result.history["val_loss"][result.best_epoch - 1], rtol=1e-5)


def test_best_epoch_skips_nan_and_inf():
    assert best_epoch([0.5, 0.4, float("nan"), 0.45]) == 2
    assert best_epoch([float("inf"), 0.7, float("nan")]) == 2
    with pytest.raises(StageError, match="val_loss was never finite"):
        best_epoch([float("nan"), float("nan")])


def test_class_weights_unset_balanced_and_given():
    y = np.array([0] * 8 + [1] * 2)
    assert class_weights({"dataset": "thoracic"}, y) is None  # unset: every row weighs 1
    balanced = class_weights({"dataset": "thoracic", "class_weight": "balanced"}, y)
    assert balanced == pytest.approx({0: 10 / (2 * 8), 1: 10 / (2 * 2)})
    given = class_weights({"dataset": "thoracic", "class_weight": {0: 1, 1: 3}}, y)
    assert given == {0: 1.0, 1: 3.0}


def test_class_weights_reach_keras_fit(params, tmp_path, monkeypatch):
    """The variant's class_weight is what Keras's fit gets (the tf.data batches carry no
    sample weights, so fit turns it into per-row weights of the loss)."""
    seen = []
    original = keras.Model.fit

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("class_weight"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", spy)
    rows = thoracic_rows(120, 4)
    x, y = rows[:, :-1].astype(np.float32), rows[:, -1].astype(np.int64)
    configure_tf(seed=7, deterministic=True, threads=1)
    cfg = {**resolve_variant(params, "thoracic_bce_clean_balanced"), "epochs": 2}
    train_model(cfg, (x[:90], y[:90]), (x[90:], y[90:]), tmp_path, tmp_path / "work")
    n, positives = 90, int(y[:90].sum())
    assert seen == [pytest.approx({0: n / (2 * (n - positives)), 1: n / (2 * positives)}, rel=1e-6)]
    unweighted = {**cfg, "class_weight": None}
    train_model(unweighted, (x[:90], y[:90]), (x[90:], y[90:]), tmp_path / "u", tmp_path / "w2")
    assert seen[1] is None
