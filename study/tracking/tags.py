"""What a run records about where it came from, so a teammate can reproduce it exactly."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from importlib.metadata import version
from pathlib import Path
from typing import Any

from study.config.paths import REPO_ROOT
from study.config.variant import Variant
from study.io.files import file_md5

# Pathspecs that do not count as source changes for the git_dirty tag: what DVC writes
# during a repro (dvc.lock, and the stages' outputs that live in git: cache: false).
NOT_SOURCE = tuple(
    f":(exclude){path}" for path in ("dvc.lock", "metrics", "plots", "reports", "search")
)


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
    """Stable hash of a config (key order does not matter)."""
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]


def provenance_tags() -> dict[str, str]:
    """Where a run came from: git commit (under `dvc exp run`, the experiment's baseline
    commit, DVC_EXP_BASELINE_REV; else HEAD), dirty source files, DVC experiment."""
    commit, dirty = git_state()
    commit = os.environ.get("DVC_EXP_BASELINE_REV") or commit
    tags = {"git_commit": commit, "git_dirty": str(dirty).lower()}
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    return tags


def run_tags(
    variant: str, cfg: Variant, seed: int, deterministic: bool, data_files: list[Path]
) -> dict[str, str]:
    """A training run's tags: variant, provenance, config hash, seed, library versions and
    the md5 of each data file (DVC's: the one dvc.lock records)."""
    tags = {
        "variant": variant,
        "dataset": cfg.dataset,
        **provenance_tags(),
        "config_hash": config_hash(cfg.model_dump(mode="json", exclude_unset=True)),
        "seed": str(seed),
        "deterministic": str(deterministic),
        "tensorflow_version": version("tensorflow-cpu"),
        "keras_version": version("keras"),
        "mlflow_version": version("mlflow"),
        "dvc_version": version("dvc"),
        "python_version": platform.python_version(),
    }
    for path in data_files:
        tags[f"data_md5.{path.parent.name}/{path.name}"] = file_md5(path)  # dvc.lock's
    return tags


def flat_config(cfg: dict[str, Any], prefix: str = "variant") -> dict[str, str]:
    """Flatten a nested config into MLflow params: variant.optimizer.beta_1 = ..."""
    flat: dict[str, str] = {}
    for key, value in cfg.items():
        if isinstance(value, dict):
            flat.update(flat_config(value, f"{prefix}.{key}"))
        else:
            flat[f"{prefix}.{key}"] = str(value)
    return flat
