"""stages.mlflow_keras: one curve per metric, readable schedules, checkpoints as logged models."""

from __future__ import annotations

import keras
import mlflow
import numpy as np
from conftest import tiny_fashion

from stages.mlflow_keras import RunLogger, log_checkpoints, readable
from stages.params import resolve_variant
from stages.train import configure_tf, train_model


def test_readable_schedule():
    config = {"class_name": "ExponentialDecay", "config": {"decay_rate": 0.9, "name": "x"}}
    assert readable(config) == "ExponentialDecay(decay_rate=0.9)"
    assert readable(0.001) == 0.001


def test_fit_logs_val_curves_once_readable_params_and_loadable_models(params, tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("e")
    cfg = {**resolve_variant(params, "exp_decay"), "epochs": 2, "batch_size": 16}
    configure_tf(seed=5, deterministic=True, threads=1)
    train, val = tiny_fashion()
    with mlflow.start_run() as run:
        train_model(cfg, train, val, tmp_path / "out", tmp_path / "w", None, [RunLogger()])
        models = {name: tmp_path / "out" / f"{name}.keras" for name in ("best", "last")}
        ids = log_checkpoints(models, train[0], {"variant": "exp_decay"})
    client = mlflow.MlflowClient()
    data = client.get_run(run.info.run_id).data
    assert {"loss", "val_loss", "accuracy", "val_accuracy"} <= set(data.metrics)
    assert not any(k.startswith("validation_") for k in data.metrics)
    assert len(client.get_metric_history(run.info.run_id, "val_loss")) == 2
    assert data.params["optimizer_learning_rate"].startswith("ExponentialDecay(")
    assert "initial_learning_rate=0.01" in data.params["optimizer_learning_rate"]
    for name, model_id in ids.items():
        logged = client.get_logged_model(model_id)
        assert logged.source_run_id == run.info.run_id and logged.name == name
        assert logged.tags["checkpoint"] == name and logged.tags["variant"] == "exp_decay"
        model = mlflow.keras.load_model(f"models:/{model_id}")
        kept = keras.saving.load_model(tmp_path / "out" / f"{name}.keras")
        for a, b in zip(model.get_weights(), kept.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
