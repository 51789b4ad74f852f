"""Servers the team tests start, each on 127.0.0.1 at a free port and stopped at the end:
`mlflow server` (tests/stages/test_team_e2e.py, tests/tracking/test_team_server.py) and a
throwaway PostgreSQL cluster as its backend store."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bench.workspace import pipeline_env

MLFLOW = str(Path(sys.executable).parent / "mlflow")
POSTGRES_MISSING = (
    "PostgreSQL is not installed: the team tracking server's test runs its store on a "
    "throwaway cluster (initdb and pg_ctl from /usr/lib/postgresql/<version>/bin). Install "
    "Debian's package: sudo apt-get install postgresql (.ci/run and, as root, `make test` do)."
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def mlflow_server(*args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """`mlflow server` on 127.0.0.1 (a free port) with `args` (its stores, `--app-name`...)
    and `env` on top of the stages' environment, once uvicorn says it listens; its URL.
    Stopped by its process group (the CLI and its uvicorn child)."""
    port = free_port()
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **(env or {})}  # as docs/team.md
    proc = subprocess.Popen(
        [MLFLOW, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1", *args],
        env=pipeline_env(**env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )  # fmt: skip
    ready, log = threading.Event(), []

    def drain() -> None:  # reads stderr to the end: the server never blocks on it
        for line in proc.stderr:
            log.append(line)
            if "Uvicorn running on" in line:
                ready.set()
        ready.set()  # it ended

    threading.Thread(target=drain, daemon=True).start()
    try:
        assert ready.wait(180) and proc.poll() is None, "".join(log)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def postgres_bin() -> Path:
    """The newest /usr/lib/postgresql/<version>/bin with initdb; the test fails (never skips)
    without it."""
    found = Path("/usr/lib/postgresql").glob("*/bin/initdb")
    versions = [p.parent for p in found if re.fullmatch(r"\d+", p.parent.parent.name)]
    if not versions:
        pytest.fail(POSTGRES_MISSING)
    return max(versions, key=lambda b: int(b.parent.name))


@contextmanager
def postgres(*databases: str) -> Iterator[str]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (a free port, password auth, no Unix
    socket outside its directory) holding `databases`; yields its base URI
    postgresql://mlflow:<password>@127.0.0.1:<port>. Stopped by pg_ctl and removed."""
    pg = postgres_bin()
    root = Path(tempfile.mkdtemp(prefix="pg", dir="/tmp"))
    # initdb refuses to run as root: the cluster runs as the user Debian's package creates.
    as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    password = secrets.token_urlsafe(16)
    (root / "pw").write_text(password)
    if as_owner:
        for path in (root, root / "pw"):
            shutil.chown(path, "postgres")
    data, port = root / "data", free_port()
    try:
        for cmd in (
            ["initdb", "-D", str(data), "-U", "mlflow", "--auth=scram-sha-256",
             f"--pwfile={root / 'pw'}", "-E", "UTF8", "--no-sync"],
            ["pg_ctl", "-D", str(data), "-l", str(root / "log"), "-w", "-o",
             f"-c listen_addresses=127.0.0.1 -p {port} -k {root}", "start"],
        ):  # fmt: skip
            run([*as_owner, str(pg / cmd[0]), *cmd[1:]], root)
        env = {**os.environ, "PGPASSWORD": password}
        for name in databases:
            run([str(pg / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "mlflow", name],
                root, env)  # fmt: skip
        yield f"postgresql://mlflow:{password}@127.0.0.1:{port}"
    finally:
        if (data / "postmaster.pid").exists():
            run([*as_owner, str(pg / "pg_ctl"), "-D", str(data), "-w", "stop", "-m", "fast"], root)
        shutil.rmtree(root)


def run(cmd: list[str], root: Path, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=120)
    log = root / "log"
    server_log = log.read_text() if log.exists() else ""
    assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout}{proc.stderr}{server_log}"
