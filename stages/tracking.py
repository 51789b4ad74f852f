"""MLflow set-up shared by the stages: store location, reachability, run tags."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from stages.params import REPO_ROOT, StageError, project_root, require

URI_ENV = "MLFLOW_TRACKING_URI"
PROBE_TIMEOUT_S = 5  # a dead server must fail the stage well before training starts
# MLflow 3's UI opens a model-training experiment on its runs, not on the GenAI overview.
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
# Pathspecs that do not count as source changes for the git_dirty tag: what DVC writes
# during a repro (dvc.lock, and the stages' outputs that live in git: cache: false).
NOT_SOURCE = tuple(
    f":(exclude){path}" for path in ("dvc.lock", "metrics", "plots", "reports", "search")
)
# Tags that describe where a run came from, not what it computes (left out of resume keys).
PROVENANCE_TAGS = {"git_commit", "git_dirty", "dvc_exp_name"}


class TrackingError(StageError):
    """The MLflow tracking store cannot be reached."""


def tracking_uri(params: dict[str, Any]) -> str:
    """$MLFLOW_TRACKING_URI, else SQLite at <user's repo root>/<mlflow.sqlite_file>.

    The path is absolute and based on DVC_ROOT when set, so runs from
    `dvc exp run --temp/--queue` land in the user's store, not in a temp copy.
    """
    uri = os.environ.get(URI_ENV)
    if uri:
        return uri
    return f"sqlite:///{project_root() / require(params, 'mlflow.sqlite_file')}"


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


def setup_mlflow(params: dict[str, Any]):
    """Point MLflow at the store and experiment; return the mlflow module.

    With the local SQLite store the experiment's artifacts go to an absolute
    <repo root>/<mlflow.artifact_dir>; MLflow's default (./mlruns under the working
    directory) would lose them in `dvc exp run --temp` copies.
    """
    uri = tracking_uri(params)
    check_reachable(uri)
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(uri)
    name = require(params, "mlflow.experiment")
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        location = None
        if uri.startswith("sqlite:"):
            location = (project_root() / require(params, "mlflow.artifact_dir")).as_uri()
        try:
            client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_TAGS)
        except MlflowException:
            # Created meanwhile by a parallel stage (dvc queue start -j 2): use theirs.
            if client.get_experiment_by_name(name) is None:
                raise
    elif any(experiment.tags.get(k) != v for k, v in EXPERIMENT_TAGS.items()):
        for key, value in EXPERIMENT_TAGS.items():  # an experiment made by older code
            client.set_experiment_tag(experiment.experiment_id, key, value)
    mlflow.set_experiment(name)
    return mlflow


def git_state(root: Path = REPO_ROOT) -> tuple[str, bool]:
    """HEAD's commit and whether tracked source files differ from it ('unknown', False
    outside git). NOT_SOURCE is left out: a repro rewrites it as it goes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *NOT_SOURCE],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False
    return head, bool(dirty)


def project_run_id() -> str | None:
    """The run `mlflow run` started for the project (MLFLOW_RUN_ID), taken out of the
    environment so that a stage's own runs nest under it instead of reusing it."""
    return os.environ.pop("MLFLOW_RUN_ID", None)


def config_hash(cfg: dict[str, Any]) -> str:
    """Stable hash of a merged variant config (key order does not matter)."""
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def run_tags(
    variant: str,
    cfg: dict[str, Any],
    params: dict[str, Any],
    data_files: list[Path],
    seed: int | None = None,
) -> dict[str, str]:
    """Tags that let a teammate reproduce the run exactly; `seed` when it is not params'."""
    from importlib.metadata import version

    tags = {
        "variant": variant,
        "dataset": cfg["dataset"],
        **provenance_tags(),
        "config_hash": config_hash(cfg),
        "seed": str(require(params, "seed") if seed is None else seed),
        "deterministic": str(require(params, "deterministic")),
        "tensorflow_version": version("tensorflow-cpu"),
        "keras_version": version("keras"),
        "mlflow_version": version("mlflow"),
        "dvc_version": version("dvc"),
        "python_version": platform.python_version(),
    }
    for path in data_files:
        tags[f"data_sha256.{path.parent.name}/{path.name}"] = file_sha256(path)
    return tags


def provenance_tags() -> dict[str, str]:
    """Where a run came from: git commit, dirty source files, DVC experiment, Ray node."""
    commit, dirty = git_state()
    tags = {"git_commit": commit, "git_dirty": str(dirty).lower()}
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    if os.environ.get("RAY_NODE_ID"):  # set by tools/ray_tasks.py: the Ray node it ran on
        tags["ray_node_id"] = os.environ["RAY_NODE_ID"]
    return tags


def resume_key(tags: dict[str, str], code_files: list[Path]) -> str:
    """What a training's result depends on: the run's tags but provenance, plus the code.

    A backup made under another key (other params, data, library versions or stage code)
    must not be resumed."""
    code = {str(p.relative_to(REPO_ROOT)): file_sha256(p) for p in code_files}
    kept = {k: v for k, v in tags.items() if k not in PROVENANCE_TAGS}
    return config_hash({"tags": kept, "code": code})
