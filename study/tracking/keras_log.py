"""MLflow's Keras logging, as the study uses it: epoch curves and MLflow 3 logged models.

RunLogger is MLflow's own Keras callback (what `mlflow.keras.autolog` installs) with two
changes: validation metrics are logged once per epoch, as `val_*` (the stock callback also
logs them again as `validation_*` at every test end, a second, step-less curve), and an
optimizer's learning-rate schedule is logged readably instead of as a serialized dict.
"""

from __future__ import annotations

import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np
from mlflow.keras import MlflowCallback

# Explicit requirements: letting MLflow infer them costs ~7 s per model (measured).
PIP_REQUIREMENTS = [f"{pkg}=={version(pkg)}" for pkg in ("tensorflow-cpu", "keras")]
SIGNATURE_ROWS = 2  # raw train examples the models' signature is inferred from
# No input_example: mlflow.keras.log_model writes it before creating the model's directory
# (FileNotFoundError, MLflow issue #16183, still in 3.17.2): tests/tracking/test_raw_signature.py
# fails (strict xfail) when MLflow fixes it.


class RunLogger(MlflowCallback):
    """Per-epoch curves, optimizer params (as configured) and the model summary of a Keras fit."""

    def on_train_begin(self, logs: dict | None = None) -> None:
        # Once per run, on its first start: a resumed run's optimizer holds the state of its
        # backup (a rate ReduceLROnPlateau lowered, a name Keras numbered), and MLflow refuses
        # to change a logged param. The rate per epoch is a metric (learning_rate).
        run_id = mlflow.active_run().info.run_id
        logged = mlflow.MlflowClient().get_run(run_id).data.params
        config = self.model.optimizer.get_config()
        params = {f"optimizer_{k}": readable(v) for k, v in config.items()}
        if not any(key in logged for key in params):
            mlflow.log_params(params)
        lines: list[str] = []
        self.model.summary(print_fn=lambda line, *_, **__: lines.append(line))
        mlflow.log_text("\n".join(lines), artifact_file="model_summary.txt")

    def on_test_end(self, logs: dict | None = None) -> None:
        """val_* arrive with on_epoch_end: no second copy named validation_*."""


def readable(value: Any) -> Any:
    """A serialized Keras object (e.g. a learning-rate schedule) as `Name(arg=value, ...)`."""
    if isinstance(value, dict) and "class_name" in value and "config" in value:
        args = ", ".join(f"{k}={v}" for k, v in value["config"].items() if k != "name")
        return f"{value['class_name']}({args})"
    return value


def log_missing_epochs(client: Any, run_id: str, history: dict[str, list[float]]) -> int:
    """Log the per-epoch values of `history` (all epochs, from the backup) that the run lacks;
    how many. A resumed run's epochs before the kill were logged by the dead process, and not
    all of them reached the store: RunLogger logs asynchronously, after the epoch's backup."""
    from mlflow.entities import Metric

    mlflow.flush_async_logging()  # this process's own epochs first
    now = int(time.time() * 1000)
    missing = []
    for key, values in history.items():
        logged = {m.step for m in client.get_metric_history(run_id, key)}
        missing += [Metric(key, v, now, i) for i, v in enumerate(values) if i not in logged]
    if missing:
        client.log_batch(run_id, metrics=missing)
    return len(missing)


def log_checkpoints(
    models: dict[str, Path], raw_examples: np.ndarray, tags: dict[str, str]
) -> dict[str, str]:
    """Log each .keras file as an MLflow 3 logged model of the active run; name -> model id.

    They appear in the experiment's Models tab, load with
    `mlflow.keras.load_model("models:/<id>")` and can be registered. The models take raw
    examples (study.training.model.raw_input_model): their signature is raw_examples' (uint8
    images, or the CSV's 17 float32 feature columns), which `mlflow models serve` enforces.
    """
    from mlflow.models import infer_signature

    ids, signature = {}, None
    for name, path in models.items():
        model = keras.saving.load_model(path, safe_mode=True)
        if signature is None:  # the checkpoints of one training share their architecture
            sample = raw_examples[:SIGNATURE_ROWS]
            # predict_on_batch: no tf.data pipeline for two rows (study/training/batches.py)
            signature = infer_signature(sample, model.predict_on_batch(sample))
        info = mlflow.keras.log_model(
            model,
            name=name,
            pip_requirements=PIP_REQUIREMENTS,
            signature=signature,
            tags={**tags, "checkpoint": name},
        )
        ids[name] = info.model_id
    return ids
