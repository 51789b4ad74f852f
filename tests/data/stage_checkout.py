"""A minimal checkout to run a data stage's entry point in (`python -m stages.fetch`): the
stage paths are relative to the checkout its modules live in (study.config.paths.REPO_ROOT)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from bench.workspace import pipeline_env
from study.config.paths import REPO_ROOT


def stage_repo(dest: Path, params: dict) -> Path:
    """The stage entry points and the library (no tests, tools, data) with these params."""
    for package in ("stages", "study"):
        shutil.copytree(
            REPO_ROOT / package, dest / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return dest


def run_module(repo: Path, module: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """`python -m module` of the checkout `repo`, from `cwd`, in the pipeline's environment."""
    return subprocess.run(
        [sys.executable, "-m", module],
        cwd=cwd,
        env={**pipeline_env(**env), "PYTHONPATH": str(repo)},
        capture_output=True,
        text=True,
        timeout=300,
    )
