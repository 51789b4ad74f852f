"""The search stage's Ray Tune side: the local Ray instance or cluster, the Tuner (seeded
Optuna TPE, ASHA), and the driver's record of every trial (study/search/run.py runs it)."""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from study.config.paths import REPO_ROOT
from study.config.search import Search
from study.search.loopback import loopback_only
from study.search.space import tune_space
from study.search.trial import run_trial

EXPERIMENT = "search"  # Tune's experiment directory under search.storage
WORKER_ENV = ("TF_CPP_MIN_LOG_LEVEL", "MLFLOW_DISABLE_TELEMETRY")
# How long a reused actor waits for the trial ASHA stopped to finish its epoch before it takes
# the next trial. Ray's default, 2 s, is shorter than one epoch of a 512-unit network here:
# the reset then failed and Tune dropped the next trial ("Could not re-use actor").
THREAD_TIMEOUT_S = 600
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

    def __init__(self, search: Search, start: float, asha: Asha) -> None:
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
        self.say(record, f"epoch {row.get('epoch')}/{self.search.max_epochs} {metrics}")

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


def start_ray(search: Search) -> bool:
    """Connect to the cluster at search.address / $RAY_ADDRESS, or start a local instance on
    127.0.0.1; True if this process started it (and must shut it down)."""
    env = {k: os.environ[k] for k in WORKER_ENV if k in os.environ}
    env["TUNE_FUNCTION_THREAD_TIMEOUT_S"] = str(THREAD_TIMEOUT_S)
    # Every node's workers get the study package (the trials' code) from the driver.
    runtime = {"py_modules": [str(REPO_ROOT / "study")], "env_vars": env}
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    address = search.address or os.environ.get("RAY_ADDRESS")
    if address:
        loopback_only(address)
        ray.init(address=address, runtime_env=runtime, **quiet)
        return False
    loopback_only()
    ray.init(
        address="local",  # a new instance: not the latest cluster `ray start` left running
        num_cpus=search.num_cpus or len(os.sched_getaffinity(0)),
        include_dashboard=search.dashboard,
        _node_ip_address="127.0.0.1",
        runtime_env=runtime,
        **quiet,
    )
    return True


def fit(search: Search, spec: dict, data: tuple, root: Path) -> tuple[dict, Asha, float]:
    """Run the trials; (records by trial id, the scheduler, seconds the search took)."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = search.storage
    if "://" not in storage:
        storage = str((root / storage).resolve())
        shutil.rmtree(Path(storage) / EXPERIMENT, ignore_errors=True)  # the last search's
    sampler = optuna.samplers.TPESampler(seed=spec["seed"], n_startup_trials=search.startup_trials)
    asha = Asha(
        time_attr="training_iteration",
        max_t=search.max_epochs,
        grace_period=search.grace_period,
        reduction_factor=search.reduction_factor,
    )
    records = Records(search, time.monotonic(), asha)
    trainable = tune.with_parameters(run_trial, data=data, spec=spec)  # ray.put once
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": search.cpus_per_trial}),
        param_space=tune_space(search.space),
        tune_config=tune.TuneConfig(
            metric=search.metric,
            mode="max" if search.metric == "val_accuracy" else "min",
            search_alg=OptunaSearch(sampler=sampler),
            scheduler=asha,
            num_samples=search.trials,
            max_concurrent_trials=search.concurrent,
            time_budget_s=search.time_limit_s,
            reuse_actors=True,  # a worker keeps TensorFlow imported from trial to trial
        ),
        run_config=tune.RunConfig(
            name=EXPERIMENT,
            storage_path=storage,
            verbose=0,
            callbacks=[records],
            failure_config=tune.FailureConfig(max_failures=search.max_failures),
        ),
    )
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # Ctrl-C interrupts fit(), as anywhere
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # verbose=0 then prints nothing: Records reports
    start = time.monotonic()
    tuner.fit()
    return records.trials, asha, time.monotonic() - start
