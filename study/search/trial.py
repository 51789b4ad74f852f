"""One trial of the search stage, as Ray Tune runs it in a worker (study/search/run.py).

The trial trains its variant with the train stage's own code (study.training.train.train_model:
the model of study.training.model, EarlyStopping, checkpoints) on the train and val arrays the
driver put in Ray's object store once, reports every epoch's metrics to Tune (ASHA may stop it
there) and logs them to its own MLflow run, nested under the search's run.

Its run's status: FINISHED once its last epoch is logged (or training ended by itself),
FAILED on an error, KILLED when Tune stops it (ASHA, the time limit; the driver tags which)
or, for an earlier attempt whose node died, when Ray retries it.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import keras

from study.config.errors import StageError
from study.config.variant import Variant
from study.search.space import trial_variant
from study.tracking.tags import flat_config
from study.training.fitting import configure_tf
from study.training.train import train_model

PARENT_TAG = "mlflow.parentRunId"
RUN_STATUS = {"completed": "FINISHED", "failed": "FAILED"}  # else KILLED: stopped by Tune


class TuneReport(keras.callbacks.Callback):
    """Log each epoch's metrics to the trial's MLflow run, then report them to Tune."""

    def __init__(self, client: Any, run_id: str, node_id: str, epochs: int) -> None:
        super().__init__()
        self.client, self.run_id, self.node_id, self.epochs = client, run_id, node_id, epochs
        self.ended = False

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        from mlflow.entities import Metric
        from ray import tune

        metrics = {k: float(v) for k, v in (logs or {}).items()}
        now = int(time.time() * 1000)
        batch = [Metric(k, v, now, epoch + 1) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch, synchronous=True)
        if epoch + 1 == self.epochs:
            # Complete whatever Tune decides now: a stop at max_t raises in tune.report.
            self.client.set_terminated(self.run_id, "FINISHED")
            self.ended = True
        # SystemExit here when Tune stops the trial (ASHA, the time limit, the end).
        tune.report({**metrics, "epoch": epoch + 1, "node_id": self.node_id})


def run_trial(config: dict[str, Any], data: tuple = (), spec: dict | None = None) -> None:
    """Tune's trainable: train the variant of `config` (sampled search.space values)."""
    import ray
    from mlflow import MlflowClient
    from mlflow.entities import Param
    from ray import tune

    spec = spec or {}
    trial_id = tune.get_context().get_trial_id()
    node_id = ray.get_runtime_context().get_node_id()
    cfg = trial_variant(spec["params"], spec["search"], config)
    client = MlflowClient(spec["tracking_uri"])
    lost = f"tags.trial_id = '{trial_id}' and attributes.status = 'RUNNING'"
    for run in client.search_runs([spec["experiment_id"]], lost):
        client.set_terminated(run.info.run_id, "KILLED")  # an attempt whose node died
    tags = {
        PARENT_TAG: spec["parent_run_id"],
        "stage": "search_trial",
        "trial_id": trial_id,
        "ray_node_id": node_id,
        "dataset": cfg.dataset,
    }
    run_id = client.create_run(spec["experiment_id"], run_name=f"search/{trial_id}", tags=tags)
    run_id = run_id.info.run_id
    flat = flat_config(cfg.model_dump(mode="json", exclude_unset=True))
    params = {**flat, **{f"search.{k}": v for k, v in config.items()}}
    client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])
    client.log_inputs(run_id, spec.get("inputs", []))
    keras.backend.clear_session()  # a reused worker process starts like a fresh one
    configure_tf(spec["seed"], spec["deterministic"], spec["threads"])
    report = TuneReport(client, run_id, node_id, cfg.epochs)
    # Scratch space in the trial's own directory under Ray's session directory: also where
    # an attempt killed with its node leaves it.
    work = Path(tempfile.mkdtemp(prefix="scratch-", dir=tune.get_context().get_trial_dir()))
    status = "FAILED"
    try:
        train_trial(cfg, data, work, run_id, report, spec["jit_compile"], spec["seed"])
        status = "FINISHED"
    except SystemExit:  # stopped by Tune
        status = "KILLED"
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not report.ended:
            client.set_terminated(run_id, status)


def train_trial(
    cfg: Variant,
    data: tuple,
    work: Path,
    run_id: str,
    report: TuneReport,
    jit_compile: bool,
    seed: int,
) -> None:
    """train_model in a scratch directory (XLA-compiled steps if jit_compile, batches in an
    order of seed and epoch); a diverged training is a finished, poor trial."""
    (train, val) = data
    # StageError: val_loss never finite (study.training.train.best_epoch), as reported to Tune
    with contextlib.suppress(StageError):
        state, meta = work / "state", {"run_id": run_id}
        train_model(
            cfg, train, val, work / "out", state, meta, [report], jit_compile=jit_compile, seed=seed
        )


def trial_runs(client: Any, experiment_id: str, run_id: str) -> list[Any]:
    """The MLflow runs of the search's trials (every attempt), oldest first."""
    found = client.search_runs([experiment_id], f"tags.{PARENT_TAG} = '{run_id}'")
    return sorted(found, key=lambda run: run.info.start_time)


def tag_trial_runs(client: Any, experiment_id: str, run_id: str, records: dict) -> None:
    """Each trial's run: its number, outcome and whether ASHA stopped it; ended accordingly."""
    latest = {
        run.data.tags.get("trial_id"): run for run in trial_runs(client, experiment_id, run_id)
    }
    for trial_id, record in records.items():
        run = latest.get(trial_id)
        if run is None:
            continue
        client.update_run(run.info.run_id, name=f"search/trial_{record['index']:02d}")
        client.set_tag(run.info.run_id, "trial", str(record["index"]))
        client.set_tag(run.info.run_id, "outcome", record["outcome"])
        stopped = record["outcome"] == "stopped_early"
        client.set_tag(run.info.run_id, "asha_stopped", str(stopped).lower())
        if run.info.status == "RUNNING" or record["outcome"] != "completed":
            client.set_terminated(run.info.run_id, RUN_STATUS.get(record["outcome"], "KILLED"))


def end_trial_runs(client: Any, experiment_id: str, run_id: str) -> None:
    """No trial run stays RUNNING: one whose process was stopped or lost becomes KILLED."""
    for run in trial_runs(client, experiment_id, run_id):
        if run.info.status == "RUNNING":
            client.set_terminated(run.info.run_id, "KILLED")
