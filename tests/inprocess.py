"""Run a stage's main() in this process on a copy of the tiny study (the `study` fixture):
no new interpreter importing TensorFlow and MLflow again, the copy's files and MLflow store
only, and MLflow's process-wide settings restored afterwards."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from types import ModuleType

import pytest

from study.config.params import load_params

# What mlflow.set_tracking_uri / set_experiment put into os.environ (for subprocesses).
MLFLOW_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME")


def run_main(stage: ModuleType, repo: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> None:
    """stage.main() with `repo` as the repository root and the project root (DVC_ROOT: the
    MLflow store and the backups), and `args` as its command line."""
    monkeypatch.setattr(stage, "REPO_ROOT", repo)
    monkeypatch.setattr(stage, "load_params", functools.partial(load_params, repo))
    monkeypatch.setenv("DVC_ROOT", str(repo))
    for name in MLFLOW_ENV:  # set then deleted: undone at teardown whatever MLflow sets
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setattr(sys, "argv", [stage.__name__, *args])
    try:
        stage.main()
    finally:
        if "mlflow" in sys.modules:  # set_tracking_uri/set_experiment are process-wide
            import mlflow.tracking.fluent

            mlflow.set_tracking_uri(None)
            mlflow.tracking.fluent._active_experiment_id = None
