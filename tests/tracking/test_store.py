"""study.tracking.store: where the runs go (a server, or SQLite in the user's repository), the
study's experiment, a fast failure on a dead server, and a SQLite store that takes parallel
writers."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time

import pytest

import stages.train
from bench.workspace import pipeline_env
from study.config.cli import run_stage
from study.config.paths import REPO_ROOT
from study.tracking.store import (
    ASYNC_BUFFER_ENV,
    ASYNC_BUFFER_S,
    EXPERIMENT_TAGS,
    SQLITE_TIMEOUT_S,
    TrackingError,
    check_reachable,
    setup_mlflow,
    tracking_uri,
)
from tracking.isolation import STORE


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def test_default_store_is_absolute_sqlite_in_the_users_repo(monkeypatch, tmp_path):
    monkeypatch.delenv("DVC_ROOT", raising=False)
    # its writers wait up to 20 s for a lock (test_busy_timeout_is_20_s_for_mlflows_sessions...)
    assert tracking_uri(STORE) == f"sqlite:///{REPO_ROOT / 'mlflow.db'}"
    # during `dvc exp run --temp/--queue` DVC_ROOT names the user's repository
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    assert tracking_uri(STORE) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri(STORE) == "http://127.0.0.1:5000"


def test_closed_port_fails_fast_naming_the_uri():
    uri = f"http://127.0.0.1:{closed_port()}"
    start = time.perf_counter()
    with pytest.raises(TrackingError, match=f"MLflow tracking server {uri} .* is not reachable"):
        check_reachable(uri)
    assert time.perf_counter() - start < 5


def fail_if_called(*args, **kwargs):
    raise AssertionError("the stage went on")


@pytest.mark.parametrize(
    ("variant", "server", "error"),
    [
        ("baseline", True, "error: MLflow tracking server {uri} (from $MLFLOW_TRACKING_URI) is"),
        ("nope", False, "error: variants: unknown variant 'nope'; defined: act_leaky_relu, "),
    ],
    ids=["dead server", "unknown variant"],
)
def test_train_stage_fails_in_one_line_before_training(variant, server, error, monkeypatch, capsys):
    uri = f"http://127.0.0.1:{closed_port()}"
    if server:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setattr(sys, "argv", ["stages/train.py", variant])
    # params.yaml's variant, not variants/<name>.json (the variants stage's, not made here)
    monkeypatch.setattr(stages.train, "variant_config", lambda params, name: params.variant(name))
    for step in ("tidy", "seed_trainings", "train_seeds"):
        monkeypatch.setattr(stages.train, step, fail_if_called)
    with pytest.raises(SystemExit) as exited:
        run_stage(stages.train.main)
    err = capsys.readouterr().err
    assert exited.value.code == 1
    assert err.startswith(error.format(uri=uri)) and err.count("\n") == 1, err


def journal_mode(db) -> str:
    with sqlite3.connect(db) as conn:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    conn.close()
    return mode


def test_setup_makes_the_experiment_with_its_artifacts_in_the_project(local_store, tmp_path):
    client = local_store.MlflowClient()
    exp = client.get_experiment_by_name(STORE.experiment)
    assert exp.artifact_location == (tmp_path / "mlartifacts").as_uri()
    assert EXPERIMENT_TAGS.items() <= exp.tags.items()
    assert local_store.get_tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert journal_mode(tmp_path / "mlflow.db") == "wal"  # kept in the file
    # An experiment made by older code gets the tags; runs go to it.
    for key in EXPERIMENT_TAGS:
        client.delete_experiment_tag(exp.experiment_id, key)
    assert setup_mlflow(STORE) is local_store
    assert EXPERIMENT_TAGS.items() <= client.get_experiment(exp.experiment_id).tags.items()
    with local_store.start_run() as run:
        pass
    assert run.info.experiment_id == exp.experiment_id


def test_async_epoch_metrics_all_reach_the_store_when_the_run_ends(local_store, monkeypatch):
    """setup_mlflow buffers MLflow's async logging (a run's end then waits for no poll of its
    queue); what a run logs asynchronously is all in the store once it ends. A value the user
    set is kept."""
    assert os.environ[ASYNC_BUFFER_ENV] == ASYNC_BUFFER_S
    with local_store.start_run() as run:
        for step in range(5):
            local_store.log_metrics({"loss": 1 / (step + 1)}, step=step, synchronous=False)
    history = local_store.MlflowClient().get_metric_history(run.info.run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == [(s, 1 / (s + 1)) for s in range(5)]
    monkeypatch.setenv(ASYNC_BUFFER_ENV, "0.5")
    setup_mlflow(STORE)
    assert os.environ[ASYNC_BUFFER_ENV] == "0.5"


def test_busy_timeout_is_20_s_for_mlflows_sessions_and_the_wal_setup(local_store, monkeypatch):
    """A writer of the store waits 20 s for another's lock before 'database is locked' (Python's
    sqlite3 gives up after 5): MLflow's busy_timeout pragma on each of its sessions, and the
    connection that switches the store to WAL (write_ahead_log) waits as long."""
    from mlflow.tracking._tracking_service.utils import _get_store
    from sqlalchemy import text

    with _get_store().ManagedSessionMaker() as session:
        busy_ms = session.execute(text("PRAGMA busy_timeout")).scalar()
    assert busy_ms == 20_000 == SQLITE_TIMEOUT_S * 1000
    timeouts = []
    connect = sqlite3.connect

    def recording(*args, **kwargs):
        timeouts.append(kwargs.get("timeout"))
        return connect(*args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", recording)
    setup_mlflow(STORE)
    assert timeouts == [20]


def test_a_reader_never_blocks_a_writer(local_store, tmp_path):
    """WAL: while another process reads the store (the UI, `mlflow.search_runs`, a report), a
    run still logs at once. In SQLite's default rollback journal the write waits for the
    reader's lock until the busy timeout, then fails with 'database is locked'."""
    reader = sqlite3.connect(tmp_path / "mlflow.db", isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM runs").fetchone() == (0,)  # a read lock
    start = time.perf_counter()
    with local_store.start_run() as run:
        local_store.log_param("p", "v")
    assert time.perf_counter() - start < 5  # not a busy wait that ended
    assert reader.execute("SELECT count(*) FROM runs").fetchone() == (0,)  # its snapshot
    reader.execute("COMMIT")
    reader.close()
    logged = local_store.MlflowClient().get_run(run.info.run_id)
    assert logged.info.status == "FINISHED" and logged.data.params == {"p": "v"}


# Writers of one store at once, as `dvc queue start -j N`, the Ray runner or the search's trials:
# each process sets the store up (setup_mlflow: WAL, the 20 s busy timeout) and logs a run
# quickly, all released together. Forked from one process that imported MLflow: fast to start.
WRITERS = """
import json, multiprocessing, sys, traceback

import mlflow.store.tracking.sqlalchemy_store  # imported once, before the fork

from study.config.sections import Mlflow
from study.tracking.store import setup_mlflow

store, n, items = Mlflow(**json.loads(sys.argv[1])), int(sys.argv[2]), int(sys.argv[3])


def write(i, start):
    try:
        start.wait()
        mlflow = setup_mlflow(store)
        with mlflow.start_run(run_name=f"writer{i}"):
            mlflow.log_params({f"p{k}": f"{i}-{k}" for k in range(items)})
            mlflow.log_metrics({f"m{k}": i + k / 100 for k in range(items)})
            mlflow.set_tags({f"t{k}": str(i) for k in range(items)})
    except BaseException:
        traceback.print_exc()
        sys.exit(1)


if __name__ == "__main__":
    fork = multiprocessing.get_context("fork")
    start = fork.Barrier(n)
    procs = [fork.Process(target=write, args=(i, start)) for i in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    sys.exit(sum(p.exitcode != 0 for p in procs))
"""


def test_parallel_writers_all_finish_on_the_sqlite_store(local_store, tmp_path):
    """Eight processes log a run each into one SQLite store at the same moment: every run
    ends FINISHED with all its data, none fails on 'database is locked'."""
    n, items = 8, 20
    env = pipeline_env(DVC_ROOT=str(tmp_path), PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", WRITERS, json.dumps(STORE.model_dump()), str(n), str(items)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "database is locked" not in proc.stderr
    assert proc.returncode == 0, proc.stderr
    assert journal_mode(tmp_path / "mlflow.db") == "wal"
    runs = local_store.search_runs(experiment_names=[STORE.experiment], output_format="list")
    assert sorted(r.info.run_name for r in runs) == sorted(f"writer{i}" for i in range(n))
    for run in runs:
        i = int(run.info.run_name.removeprefix("writer"))
        assert run.info.status == "FINISHED"
        assert run.data.params == {f"p{k}": f"{i}-{k}" for k in range(items)}
        assert run.data.metrics == {f"m{k}": i + k / 100 for k in range(items)}
        assert {k: v for k, v in run.data.tags.items() if k.startswith("t")} == {
            f"t{k}": str(i) for k in range(items)
        }
