"""Finding the processes a test started, among those of the other xdist worker."""

from __future__ import annotations

import os
from pathlib import Path

import psutil


def ray_processes(marker: str) -> list[psutil.Process]:
    """Live processes started with RAY_TMPDIR=marker in their environment: the Ray instance
    one test started, not another worker's."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("RAY_TMPDIR") == marker and proc.status() != "zombie":
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1"}  # IPv4's, also as an IPv6 socket shows it


def listening_ips(procs: list[psutil.Process]) -> set[str]:
    """The addresses the processes accept connections on (their TCP sockets in LISTEN state)."""
    pids = {p.pid for p in procs}
    return {
        c.laddr.ip
        for c in psutil.net_connections("inet")
        if c.status == psutil.CONN_LISTEN and c.pid in pids
    }


def is_fork_server(proc: psutil.Process) -> bool:
    """tools/forkserver.py itself, not a stage forked from it (same command line)."""
    try:
        parent = proc.parent()
        return "forkserver.py" in " ".join(proc.cmdline()) and not (
            parent and "forkserver.py" in " ".join(parent.cmdline())
        )
    except psutil.NoSuchProcess:
        return False


def working_in(directory: Path) -> list[psutil.Process]:
    """Live processes whose working directory is `directory`: there, `dvc`, tools.prefork's
    caller and the stage the warm server forked for it (a fork takes its caller's cwd)."""
    found = []
    for proc in psutil.process_iter(["cwd"]):
        if proc.info["cwd"] and Path(proc.info["cwd"]) == directory.resolve():
            found.append(proc)
    return found


def describe(procs: list[psutil.Process]) -> str:
    """One line per process (pid, parent, group, session, state, command line), for a
    failure message that shows which process was left and how it was started."""
    lines = []
    for proc in procs:
        try:
            with proc.oneshot():
                pid = proc.pid
                ids = f"ppid={proc.ppid()} pgid={os.getpgid(pid)} sid={os.getsid(pid)}"
                lines.append(f"{pid} {ids} {proc.status()}: {' '.join(proc.cmdline())[:160]}")
        except (psutil.NoSuchProcess, ProcessLookupError):
            lines.append(f"{proc.pid}: gone")
    return "\n".join(lines)
