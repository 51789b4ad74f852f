"""Fixtures that keep the tests of tests/tracking and tests/training out of the checkout: a
private MLflow store per test, and a guard that fails a test which wrote one into the repo.

Both folders are packages (tracking, training: their __init__.py), so their conftest.py
modules do not shadow tests/conftest.py as `conftest` (`from conftest import tiny_fashion`)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from study.config.paths import BACKUP_DIR, REPO_ROOT
from study.config.sections import Mlflow

# What MLflow writes when it is not given a store or an artifact root (./mlruns: a file store,
# or the artifacts of an experiment made without artifact_location; ./mlflow.db: MLflow 3's
# default store), and what the study writes into the project root unless DVC_ROOT moves it.
LITTER = ("mlruns", "mlflow.db", "mlflow.db-wal", "mlartifacts", str(BACKUP_DIR))
# The env vars mlflow.set_tracking_uri and mlflow.set_experiment set (for subprocesses).
MLFLOW_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME")
# The store settings of params.yaml's mlflow section; relative to the project root (DVC_ROOT).
STORE = Mlflow(
    experiment="e", sqlite_file="mlflow.db", artifact_dir="mlartifacts", system_metrics_s=None
)


def _snapshot(dirs: list[Path]) -> dict[Path, int]:
    """mtime_ns of each litter entry present: a new one appears, a written one changes."""
    return {d / n: (d / n).stat().st_mtime_ns for d in dirs for n in LITTER if (d / n).exists()}


@pytest.fixture(autouse=True)
def no_store_in_checkout(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail a test that leaves MLflow's store, artifacts or backups in the repository root (or
    the working directory): it must use a tmp store. The ambient MLFLOW_* env (a user's
    server) is hidden, and MLflow's process-wide store and experiment are reset afterwards."""
    dirs = list(dict.fromkeys([REPO_ROOT, Path.cwd()]))
    before = _snapshot(dirs)
    for name in MLFLOW_ENV:
        monkeypatch.delenv(name, raising=False)
    yield
    if "mlflow" in sys.modules:  # set_tracking_uri/set_experiment are process-wide
        import mlflow.tracking.fluent

        mlflow.set_tracking_uri(None)
        mlflow.tracking.fluent._active_experiment_id = None
    after = _snapshot(dirs)
    written = sorted(str(p) for p, mtime in after.items() if before.get(p) != mtime)
    for path in (Path(p) for p in written if Path(p) not in before):  # not the user's own
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    assert not written, f"the test wrote {written} into the checkout: give it a tmp store"


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store with its tables and nothing else: a new store runs MLflow's
    migrations, which take seconds; each test copies this one instead."""
    import mlflow

    path = tmp_path_factory.mktemp("store") / STORE.sqlite_file
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()  # migrates
    return path


@pytest.fixture
def local_store(empty_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The study's local SQLite store in tmp_path, as the stages set it up (tmp_path is the
    project root: DVC_ROOT, so the experiment's artifacts and the backups go there too);
    returns mlflow, pointed at it."""
    from study.tracking.store import ASYNC_BUFFER_ENV, setup_mlflow

    shutil.copyfile(empty_store, tmp_path / STORE.sqlite_file)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.delenv(ASYNC_BUFFER_ENV, raising=False)  # setup_mlflow's, undone after the test
    return setup_mlflow(STORE)


def experiment_id(mlflow: Any) -> str:
    return mlflow.MlflowClient().get_experiment_by_name(STORE.experiment).experiment_id
