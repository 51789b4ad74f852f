"""Where MLflow runs go: the tracking store (a server, or SQLite in the user's repository) and
the study's experiment; fail fast when a server does not answer."""

from __future__ import annotations

import os
import sqlite3
import urllib.error
import urllib.request
from typing import Any

from study.config.errors import StageError
from study.config.paths import project_root
from study.config.sections import Mlflow

URI_ENV = "MLFLOW_TRACKING_URI"
PROBE_TIMEOUT_S = 5  # a dead server must fail the stage well before training starts
# How long write_ahead_log's own connection waits for a lock. MLflow's connections wait 20 s
# (the busy_timeout pragma it sets on each of its sessions, MLflow 3.17).
SQLITE_TIMEOUT_S = 20
# MLflow 3's UI opens a model-training experiment on its runs, not on the GenAI overview.
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
# MLflow's async logging thread (RunLogger's per-epoch metrics) waits on its queue for up to
# 1 s between checks for a stop, so each training run's end waited up to 1 s for it (0.96 s
# measured after a short run; MLflow 3.17, async_logging_queue.py). With a buffer it waits
# on the stop event itself (end of run: ~0.01 s), and batches what came meanwhile; metrics
# reach the store at most this late. A value the user set stays.
ASYNC_BUFFER_ENV, ASYNC_BUFFER_S = "MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS", "1"


class TrackingError(StageError):
    """The MLflow tracking store cannot be reached."""


def tracking_uri(cfg: Mlflow) -> str:
    """$MLFLOW_TRACKING_URI, else SQLite at <user's repo root>/<mlflow.sqlite_file>.

    The path is absolute and based on DVC_ROOT when set, so runs from
    `dvc exp run --temp/--queue` land in the user's store, not in a temp copy.
    """
    uri = os.environ.get(URI_ENV)
    if uri:
        return uri
    return f"sqlite:///{project_root() / cfg.sqlite_file}"


def check_reachable(uri: str) -> None:
    """Fail fast, naming the URI, when an HTTP tracking server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=PROBE_TIMEOUT_S):
            pass
    except (urllib.error.URLError, OSError) as exc:
        raise TrackingError(
            f"MLflow tracking server {uri} (from ${URI_ENV}) is not reachable: {exc}. "
            f"Start it, or unset {URI_ENV} to use the local SQLite store."
        ) from exc


def write_ahead_log(uri: str) -> None:
    """Put a local SQLite store in WAL mode (kept in the file): readers never block the
    writer, and the many writers of a parallel run wait less. Not for a store on a network
    file system, where SQLite's WAL does not work: use a tracking server there."""
    if not uri.startswith("sqlite:///"):
        return
    path = uri.removeprefix("sqlite:///").split("?")[0]
    with sqlite3.connect(path, timeout=SQLITE_TIMEOUT_S) as conn:
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode=WAL")
    conn.close()


def setup_mlflow(cfg: Mlflow) -> Any:
    """Point MLflow at the store and the study's experiment (created if new); return mlflow.

    With the local SQLite store the experiment's artifacts go to an absolute
    <repo root>/<mlflow.artifact_dir>; MLflow's default (./mlruns under the working
    directory) would lose them in `dvc exp run --temp` copies.
    """
    uri = tracking_uri(cfg)
    check_reachable(uri)
    os.environ.setdefault(ASYNC_BUFFER_ENV, ASYNC_BUFFER_S)
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(cfg.experiment)  # creates a new store's tables
    write_ahead_log(uri)
    if experiment is None:
        location = None
        if uri.startswith("sqlite:"):
            location = (project_root() / cfg.artifact_dir).as_uri()
        try:
            client.create_experiment(
                cfg.experiment, artifact_location=location, tags=EXPERIMENT_TAGS
            )
        except MlflowException:
            # Created meanwhile by a parallel stage (dvc queue start -j 2): use theirs.
            if client.get_experiment_by_name(cfg.experiment) is None:
                raise
    elif any(experiment.tags.get(k) != v for k, v in EXPERIMENT_TAGS.items()):
        for key, value in EXPERIMENT_TAGS.items():  # an experiment made by older code
            client.set_experiment_tag(experiment.experiment_id, key, value)
    mlflow.set_experiment(cfg.experiment)
    return mlflow
