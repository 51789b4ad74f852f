"""study.tracking.keras_log: one curve per metric, readable schedules, checkpoints as logged
models, and a resumed run's curves completed from its backup."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import tiny_fashion
from training.crashes import Crash

from study.config.params import load_params
from study.config.variant import Variant
from study.tracking.keras_log import RunLogger, log_checkpoints, log_missing_epochs, readable
from study.training.fitting import configure_tf
from study.training.train import train_model


def test_readable_schedule():
    config = {"class_name": "ExponentialDecay", "config": {"decay_rate": 0.9, "name": "x"}}
    assert readable(config) == "ExponentialDecay(decay_rate=0.9)"
    assert readable(0.001) == 0.001


def test_fit_logs_val_curves_once_readable_params_and_loadable_models(local_store, tmp_path):
    mlflow = local_store  # artifacts in tmp_path/mlartifacts, not ./mlruns
    cfg = load_params().variant("exp_decay").model_dump(exclude_unset=True)
    cfg = Variant.model_validate({**cfg, "epochs": 2, "batch_size": 16})
    configure_tf(seed=5, deterministic=True, threads=1)
    train, val = tiny_fashion()
    with mlflow.start_run() as run:
        train_model(cfg, train, val, tmp_path / "out", tmp_path / "w", None, [RunLogger()], seed=5)
        models = {name: tmp_path / "out" / f"{name}.keras" for name in ("best", "last")}
        ids = log_checkpoints(models, train[0], {"variant": "exp_decay"})
    client = mlflow.MlflowClient()
    data = client.get_run(run.info.run_id).data
    assert {"loss", "val_loss", "accuracy", "val_accuracy"} <= set(data.metrics)
    assert not any(k.startswith("validation_") for k in data.metrics)
    assert len(client.get_metric_history(run.info.run_id, "val_loss")) == 2
    assert data.params["optimizer_learning_rate"].startswith("ExponentialDecay(")
    assert "initial_learning_rate=0.01" in data.params["optimizer_learning_rate"]
    assert run.info.artifact_uri.startswith((tmp_path / "mlartifacts").as_uri())
    for name, model_id in ids.items():
        logged = client.get_logged_model(model_id)
        assert logged.source_run_id == run.info.run_id and logged.name == name
        assert logged.tags["checkpoint"] == name and logged.tags["variant"] == "exp_decay"
        assert logged.artifact_location.startswith((tmp_path / "mlartifacts").as_uri())
        model = mlflow.keras.load_model(f"models:/{model_id}")
        kept = keras.saving.load_model(tmp_path / "out" / f"{name}.keras")
        for a, b in zip(model.get_weights(), kept.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)


def test_a_resumed_runs_missing_epochs_are_logged_from_the_backup(local_store):
    """Epochs a killed process trained but did not log (MLflow's async queue died with it)."""
    client = local_store.MlflowClient()
    with local_store.start_run() as run:
        local_store.log_metrics({"loss": 0.9, "val_loss": 1.0}, step=0)
        local_store.log_metrics({"loss": 0.5, "val_loss": 0.6}, step=2, synchronous=False)
    history = {"loss": [0.9, 0.7, 0.5, 0.4], "val_loss": [1.0, 0.8, 0.6, float("nan")]}
    assert log_missing_epochs(client, run.info.run_id, history) == 4  # steps 1 and 3
    for key, values in history.items():
        logged = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        np.testing.assert_array_equal(logged, list(enumerate(values)))
    assert log_missing_epochs(client, run.info.run_id, history) == 0


def test_a_resumed_run_keeps_its_configured_optimizer_params_and_warns_nothing(
    local_store, tmp_path, caplog
):
    """A plateau halves the rate before the kill; the resumed process's optimizer holds the
    reduced rate (from the backup), which MLflow would refuse as a changed param."""
    mlflow = local_store
    cfg = load_params().variant("baseline").model_dump(exclude_unset=True)
    plateau = {"factor": 0.5, "patience": 1}
    fields = {"epochs": 5, "batch_size": 16, "patience": 5, "reduce_lr_on_plateau": plateau}
    cfg = Variant.model_validate({**cfg, **fields})
    train, val = tiny_fashion()
    val = (val[0], np.random.default_rng(0).permutation(val[1]))  # val_loss rises: plateau
    with mlflow.start_run() as run:
        configure_tf(seed=5, deterministic=True, threads=1)
        try:
            logging = [RunLogger(), Crash(3)]
            train_model(cfg, train, val, tmp_path / "out", tmp_path / "w", None, logging, seed=5)
        except KeyboardInterrupt:
            pass
    configure_tf(seed=5, deterministic=True, threads=1)
    caplog.clear()
    with caplog.at_level("WARNING"), mlflow.start_run(run_id=run.info.run_id):
        result = train_model(
            cfg, train, val, tmp_path / "out", tmp_path / "w", None, [RunLogger()], seed=5
        )
    assert result.history["learning_rate"][2] < 0.001, result.history  # reduced before the kill
    warned = [r.getMessage() for r in caplog.records if r.name.startswith("mlflow")]
    assert warned == []  # autologging's warning of a refused param change
    client = mlflow.MlflowClient()
    params = client.get_run(run.info.run_id).data.params
    assert float(params["optimizer_learning_rate"]) == pytest.approx(0.001)  # as configured
