"""A throwaway copy of this repository, for the benchmark and the end-to-end tests, and the
log of the stage processes its warm servers fork."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from study.config.paths import REPO_ROOT
from tools.prefork import socket_dir

GIT_ID = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@localhost",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@localhost",
}


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args],
        cwd=repo,
        env={**os.environ, **GIT_ID},
        capture_output=True,
        text=True,
        check=True,
    ).stdout


# Results main keeps in git (cache: false outputs): a copy makes its own.
RESULTS = ("metrics/", "plots/", "reports/", "search/", "variants/")


def copy_repo(dest: Path) -> Path:
    """Git-tracked files and stage modules of this checkout (with edits) as a fresh repo.

    Outputs of local runs (data, models, mlflow.db) and main's results are never copied.
    """
    tracked = set(_git(REPO_ROOT, "ls-files", "--cached").split())
    untracked = _git(REPO_ROOT, "ls-files", "--others", "--exclude-standard").split()
    for name in sorted(
        tracked | {n for n in untracked if n.startswith(("stages/", "study/", "tools/"))}
    ):
        src = REPO_ROOT / name
        if src.is_file() and not name.startswith(("tests/", "bench/", *RESULTS)):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    _git(dest, "init", "-q")
    commit(dest, "copy")
    return dest


def commit(repo: Path, message: str) -> None:
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", message)


def pipeline_env(**extra: str) -> dict[str, str]:
    """The environment stages run in: the venv's python first, telemetry off."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
        DVC_NO_ANALYTICS="1",
        MLFLOW_DISABLE_TELEMETRY="true",
        RAY_USAGE_STATS_ENABLED="0",
        TF_CPP_MIN_LOG_LEVEL="2",
        **GIT_ID,
    )
    env.update(extra)
    return env


def dvc_bin() -> str:
    return str(Path(sys.executable).parent / "dvc")


class ForkLog:
    """The stage processes the warm servers forked (their logs: label, wall s, peak RSS),
    since the last call."""

    def __init__(self) -> None:
        self.seen: dict[Path, int] = {}

    def new_runs(self) -> list[dict[str, Any]]:
        runs = []
        for path in sorted(socket_dir().glob("*.log")):
            lines = path.read_text().splitlines()
            runs += [
                json.loads(x) for x in lines[self.seen.get(path, 0) :] if x.startswith('{"run"')
            ]
            self.seen[path] = len(lines)
        return runs
