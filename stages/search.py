"""search: a hyperparameter search with Ray Tune; its best trial becomes the searched variant.

Usage: python -m stages.search   (dvc.yaml's search stage; params.yaml's `search` section)

A seeded Optuna TPE searcher proposes trials from search.space, ASHA stops poor ones at its
rungs, and Ray schedules, retries (search.max_failures) and stops them: on a local Ray
instance this stage starts on 127.0.0.1 and shuts down when it ends (also on Ctrl-C and
SIGTERM), or on the cluster at search.address or $RAY_ADDRESS, which it leaves running.
Each trial (stages/search_trial.py) trains its variant with the train stage's code on the
train and val splits and logs to its own MLflow run, nested under this stage's run `search`.
Writes search/best.yaml (the best trial as a variant entry), metrics/search.json and
reports/search_trials.{csv,md}, reports/search.png (stages/search_report.py).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from stages.formats import load_split, split_path
from stages.params import (
    PREPARED_DIR,
    REPO_ROOT,
    load_params,
    require,
    run_stage,
)
from stages.search_report import OUTPUTS, finish
from stages.search_space import search_settings, tune_space
from stages.search_trial import PARENT_TAG, end_trial_runs, run_trial, tag_trial_runs

EXPERIMENT = "search"  # Tune's experiment directory under search.storage
WORKER_ENV = ("TF_CPP_MIN_LOG_LEVEL", "MLFLOW_DISABLE_TELEMETRY")
RESULT_KEYS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "node_id")


class Asha(ASHAScheduler):
    """ASHA that remembers the trials it stopped before max_t (stopped early)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stopped_early: set[str] = set()

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        decision = super().on_trial_result(tune_controller, trial, result)
        if decision == self.STOP and result[self._time_attr] < self._max_t:
            self.stopped_early.add(trial.trial_id)
        return decision


class Records(tune.Callback):
    """Each trial's config and per-epoch results as the driver receives them (with seconds
    since the search began), its attempts and error; one progress line per event."""

    def __init__(self, search: dict[str, Any], start: float, asha: Asha) -> None:
        self.search, self.start, self.asha = search, start, asha
        self.trials: dict[str, dict[str, Any]] = {}

    def _get(self, trial: Any) -> dict[str, Any]:
        if trial.trial_id not in self.trials:
            self.trials[trial.trial_id] = {
                "index": len(self.trials) + 1,
                "trial_id": trial.trial_id,
                "config": dict(trial.config),
                "results": [],
                "attempts": 1,
                "error": None,
                "outcome": "",
                "started": time.monotonic(),
            }
        return self.trials[trial.trial_id]

    def say(self, record: dict[str, Any], text: str) -> None:
        elapsed = time.monotonic() - self.start
        print(f"search: trial {record['index']:02d} {text} {elapsed:.1f}s", flush=True)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        record = self._get(trial)
        settings = " ".join(f"{k}={_short(v)}" for k, v in record["config"].items())
        self.say(record, f"started: {settings}")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info):
        record, now = self._get(trial), time.monotonic()
        row = {k: result[k] for k in RESULT_KEYS if k in result}
        row.update(t_s=now - self.start, trial_s=now - record["started"], wall=time.time())
        record["results"].append(row)
        metrics = " ".join(f"{k} {row[k]:.4f}" for k in ("val_accuracy", "val_loss") if k in row)
        self.say(record, f"epoch {row.get('epoch')}/{self.search['max_epochs']} {metrics}")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        record = self._get(trial)
        stopped = "stopped early by ASHA" if trial.trial_id in self.asha.stopped_early else "ended"
        self.say(record, f"{stopped} after {len(record['results'])} epochs")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        record = self._get(trial)
        self.say(record, f"failed ({_error(trial)}); Ray runs it again")
        record.update(attempts=record["attempts"] + 1, results=[], started=time.monotonic())

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        record = self._get(trial)
        record["error"] = _error(trial)
        self.say(record, f"failed: {record['error']}")


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _error(trial: Any) -> str:
    """The last line of a trial's error (its exception), or what Tune knows of it."""
    try:
        error = trial.get_pickled_error() or trial.get_error()
    except Exception:  # the error file may be gone with its node
        error = None
    lines = str(error or "unknown error").strip().splitlines()
    return lines[-1][:200] if lines else "unknown error"


def start_ray(search: dict[str, Any]) -> bool:
    """Connect to the cluster at search.address / $RAY_ADDRESS, or start a local instance on
    127.0.0.1; True if this process started it (and must shut it down)."""
    env = {k: os.environ[k] for k in WORKER_ENV if k in os.environ}
    # Every node's workers get this stages package (the trials' code) from the driver.
    runtime = {"py_modules": [str(REPO_ROOT / "stages")], "env_vars": env}
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    address = search["address"] or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, runtime_env=runtime, **quiet)
        return False
    ray.init(
        address="local",  # a new instance: not the latest cluster `ray start` left running
        num_cpus=search["num_cpus"] or len(os.sched_getaffinity(0)),
        include_dashboard=search["dashboard"],
        _node_ip_address="127.0.0.1",
        runtime_env=runtime,
        **quiet,
    )
    return True


class Interrupted(KeyboardInterrupt):
    """SIGTERM, raised where the stage is, like Ctrl-C."""

    signum = signal.SIGINT


def _on_sigterm(signum: int, frame: Any) -> None:
    Interrupted.signum = signum
    raise Interrupted


def run_search(params: dict[str, Any], root: Path = REPO_ROOT) -> dict[str, Any]:
    """The search, its MLflow runs and its outputs under root; metrics/search.json's dict
    (and the driver's record of every trial under `trial_records`, not in the file).

    Every check runs before any data is read or Ray starts (search_settings)."""
    search = search_settings(params)
    files = [split_path(root / PREPARED_DIR, s, search["dataset"]) for s in ("train", "val")]
    train, val = (load_split(path) for path in files)
    client, spec = search_run(params, search)
    experiment_id, run_id = spec["experiment_id"], spec["parent_run_id"]
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main_thread else None
    owned = not ray.is_initialized()  # a caller's Ray connection is the caller's to end
    status = "FAILED"
    try:
        start = time.monotonic()
        if owned:
            start_ray(search)
        if main_thread:
            signal.signal(signal.SIGTERM, _on_sigterm)
        records, asha, fit_s = fit(search, spec, (train, val), root)
        wall_s = time.monotonic() - start
        stats = finish(params, records, asha.stopped_early, fit_s, wall_s, root)
        tag_trial_runs(client, experiment_id, run_id, records)
        log_outputs(client, run_id, stats, root)
        status = "FINISHED"
        return {**stats, "trial_records": records}
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        end_trial_runs(client, experiment_id, run_id)
        client.set_terminated(run_id, status)
        if owned:
            ray.shutdown()  # a local instance: every process it started; a cluster: we leave
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def search_run(params: dict[str, Any], search: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Start the search's MLflow run; (client, what every trial needs from the driver).

    The store and experiment exist before any trial uses them (setup_mlflow): trials
    migrating a fresh SQLite store at once would race."""
    from mlflow.entities import Param

    from stages.tracking import project_run_id, provenance_tags, setup_mlflow

    mlflow = setup_mlflow(params)
    client = mlflow.MlflowClient()
    name = require(params, "mlflow.experiment")
    experiment_id = client.get_experiment_by_name(name).experiment_id
    tags = {"stage": "search", **provenance_tags()}
    project = project_run_id()  # under `mlflow run`: a child of the project's run
    if project:
        tags[PARENT_TAG] = project
    run_id = client.create_run(experiment_id, run_name="search", tags=tags).info.run_id
    settings = {k: v for k, v in search.items() if k != "space"}
    settings |= {f"space.{k}": json.dumps(v) for k, v in search["space"].items()}
    client.log_batch(run_id, params=[Param(f"search.{k}", str(v)) for k, v in settings.items()])
    return client, {
        "params": params,
        "search": search,
        "tracking_uri": mlflow.get_tracking_uri(),  # absolute: trials run anywhere
        "experiment_id": experiment_id,
        "parent_run_id": run_id,
        "seed": require(params, "seed"),
        "deterministic": require(params, "deterministic"),
        "threads": max(1, int(search["cpus_per_trial"])),
    }


def fit(search: dict, spec: dict, data: tuple, root: Path) -> tuple[dict, Asha, float]:
    """Run the trials; (records by trial id, the scheduler, seconds the search took)."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = search["storage"]
    if "://" not in storage:
        storage = str((root / storage).resolve())
        shutil.rmtree(Path(storage) / EXPERIMENT, ignore_errors=True)  # the last search's
    sampler = optuna.samplers.TPESampler(
        seed=spec["seed"], n_startup_trials=search["startup_trials"]
    )
    asha = Asha(
        time_attr="training_iteration",
        max_t=search["max_epochs"],
        grace_period=search["grace_period"],
        reduction_factor=search["reduction_factor"],
    )
    records = Records(search, time.monotonic(), asha)
    trainable = tune.with_parameters(run_trial, data=data, spec=spec)  # ray.put once
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": search["cpus_per_trial"]}),
        param_space=tune_space(search["space"]),
        tune_config=tune.TuneConfig(
            metric=search["metric"],
            mode="max" if search["metric"] == "val_accuracy" else "min",
            search_alg=OptunaSearch(sampler=sampler),
            scheduler=asha,
            num_samples=search["trials"],
            max_concurrent_trials=search["concurrent"],
            time_budget_s=search["time_limit_s"],
            reuse_actors=True,  # a worker keeps TensorFlow imported from trial to trial
        ),
        run_config=tune.RunConfig(
            name=EXPERIMENT,
            storage_path=storage,
            verbose=0,
            callbacks=[records],
            failure_config=tune.FailureConfig(max_failures=search["max_failures"]),
        ),
    )
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # Ctrl-C interrupts fit(), as anywhere
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # verbose=0 then prints nothing: Records reports
    start = time.monotonic()
    tuner.fit()
    return records.trials, asha, time.monotonic() - start


def log_outputs(client: Any, run_id: str, stats: dict[str, Any], root: Path) -> None:
    """The summary as the search run's metrics, the outputs as its artifacts."""
    best = {f"best_{k}".replace("best_best_", "best_"): v for k, v in stats["best"].items()}
    counts = {k: v for k, v in stats.items() if isinstance(v, (int, float))}
    for key, value in {**best, **counts}.items():
        client.log_metric(run_id, key, value)
    for path in OUTPUTS:
        client.log_artifact(run_id, str(root / path))


def main() -> None:
    params = load_params()
    try:
        stats = run_search(params)
    except KeyboardInterrupt:
        print("search: interrupted: Ray shut down, trial runs ended KILLED", file=sys.stderr)
        raise SystemExit(128 + Interrupted.signum) from None
    stats.pop("trial_records")
    print(f"search: {json.dumps(stats)}")


if __name__ == "__main__":
    run_stage(main)
