"""The search stage's driver: a hyperparameter search with Ray Tune whose best trial becomes
the searched variant.

A seeded Optuna TPE searcher proposes trials from search.space, ASHA stops poor ones at its
rungs, and Ray schedules, retries (search.max_failures) and stops them: on a local Ray
instance this stage starts on 127.0.0.1 and shuts down when it ends (also on Ctrl-C and
SIGTERM), or on the cluster at search.address or $RAY_ADDRESS, which it leaves running.
Each trial (trial.py) trains its variant with the train stage's code on the train and val
splits and logs to its own MLflow run, nested under this stage's run `search`. Ray and Tune:
tune.py. Writes search/best.yaml (the best trial as a variant entry), metrics/search.json and
reports/search_trials.{csv,md}, reports/search.png (report.py).
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import ray

from study.config.params import Params
from study.config.paths import MODELS_DIR, PREPARED_DIR, REPO_ROOT, split_path
from study.config.search import Search
from study.io.splits import load_split
from study.search.report import OUTPUTS, finish
from study.search.space import check_space
from study.search.trial import PARENT_TAG, end_trial_runs, tag_trial_runs
from study.search.tune import fit, start_ray
from study.tracking.lineage import split_inputs
from study.tracking.store import setup_mlflow
from study.tracking.tags import project_run_id, provenance_tags
from study.training.backups import tidy


class Interrupted(KeyboardInterrupt):
    """SIGTERM, raised where the stage is, like Ctrl-C."""

    signum = signal.SIGINT


def _on_sigterm(signum: int, frame: Any) -> None:
    Interrupted.signum = signum
    raise Interrupted


def run_search(params: Params, root: Path = REPO_ROOT) -> dict[str, Any]:
    """The search, its MLflow runs and its outputs under root; metrics/search.json's dict
    (and the driver's record of every trial under `trial_records`, not in the file).

    Every check runs before any data is read or Ray starts (check_space)."""
    search = check_space(params)
    files = [split_path(root / PREPARED_DIR, s, search.dataset) for s in ("train", "val")]
    train, val = (load_split(path) for path in files)
    client, spec = search_run(params, search, root)
    # The trials' inputs (the split files), built once here: a trial's node may not hold them.
    spec["inputs"] = split_inputs(list(zip(files, (train, val), strict=True)))
    experiment_id, run_id = spec["experiment_id"], spec["parent_run_id"]
    # Logged here first, so the datasets exist in the experiment before trials link them: two
    # trials creating them at once failed one on MLflow's unique (experiment, name, digest).
    client.log_inputs(run_id, spec["inputs"])
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


def search_run(params: Params, search: Search, root: Path) -> tuple[Any, dict[str, Any]]:
    """Start the search's MLflow run; (client, what every trial needs from the driver).

    The store and experiment exist before any trial uses them (setup_mlflow): trials
    migrating a fresh SQLite store at once would race."""
    from mlflow.entities import Param

    mlflow = setup_mlflow(params.mlflow)
    client = mlflow.MlflowClient()
    tidy(client, set(params.study_variants()), root / MODELS_DIR)
    experiment_id = client.get_experiment_by_name(params.mlflow.experiment).experiment_id
    tags = {"stage": "search", **provenance_tags()}
    project = project_run_id()  # under `mlflow run`: a child of the project's run
    if project:
        tags[PARENT_TAG] = project
    run_id = client.create_run(experiment_id, run_name="search", tags=tags).info.run_id
    settings = search.model_dump(exclude={"space"})
    settings |= {
        f"space.{k}": json.dumps(v.model_dump(exclude_none=True)) for k, v in search.space.items()
    }
    client.log_batch(run_id, params=[Param(f"search.{k}", str(v)) for k, v in settings.items()])
    return client, {
        "params": params,
        "search": search,
        "tracking_uri": mlflow.get_tracking_uri(),  # absolute: trials run anywhere
        "experiment_id": experiment_id,
        "parent_run_id": run_id,
        "seed": params.seed,
        "deterministic": params.deterministic,
        "threads": max(1, int(search.cpus_per_trial)),
        "jit_compile": params.train.jit_compile,
    }


def log_outputs(client: Any, run_id: str, stats: dict[str, Any], root: Path) -> None:
    """The summary as the search run's metrics, the outputs as its artifacts."""
    best = {f"best_{k}".replace("best_best_", "best_"): v for k, v in stats["best"].items()}
    counts = {k: v for k, v in stats.items() if isinstance(v, (int, float))}
    for key, value in {**best, **counts}.items():
        client.log_metric(run_id, key, value)
    for path in OUTPUTS:
        client.log_artifact(run_id, str(root / path))
