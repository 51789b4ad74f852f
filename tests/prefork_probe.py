"""The warm stage runner (tools/prefork) under test: a stand-in stage (probe.py) reports what
its process sees, then exits as told; a directory to run it in, callers of `python -m
tools.prefork probe`, and what the servers and the stage processes left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from study.config.paths import REPO_ROOT

# probe.py, after its `VERSION = N` line: the mode is its first argument.
PROBE = """
import json, os, sys, time
from pathlib import Path
mode = sys.argv[1]
print(json.dumps({"pid": os.getpid(), "cwd": os.getcwd(), "argv": sys.argv,
                  "env": os.environ.get("PROBE_VALUE"), "stdin": sys.stdin.readline().strip(),
                  "version": VERSION}), flush=True)
print("to stderr", file=sys.stderr)
if mode == "sleep":
    Path("started").write_text(str(os.getpid()))
    time.sleep(60)
if mode == "fail":
    raise RuntimeError("boom")
if mode == "interrupt":
    raise KeyboardInterrupt
if mode == "kill":
    os.kill(os.getpid(), 9)
if mode == "cleanup":
    import atexit, threading
    atexit.register(lambda: Path("atexit-ran").write_text("yes"))
    threading.Thread(target=lambda: (time.sleep(0.3), Path("thread-ran").write_text("yes"))).start()
    sys.exit("bye")
sys.exit(int(mode))
"""
RUNNER = {"prefork": True, "idle_timeout_s": 60, "start_timeout_s": 60, "preload": ["json"]}


def probe_repo(tmp_path: Path, version: int = 1, **runner) -> Path:
    """A directory with params.yaml (runner section), probe.py and a link to tools/."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"runner": {**RUNNER, **runner}}))
    (tmp_path / "probe.py").write_text(f"VERSION = {version}\n{PROBE}")
    for package in ("tools", "stages", "study"):
        if not (tmp_path / package).exists():
            (tmp_path / package).symlink_to(REPO_ROOT / package)
    return tmp_path


def start(repo: Path, *args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tools.prefork", "probe", *args],
        cwd=repo,
        env={**os.environ, "PROBE_VALUE": "v1", **env},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(repo: Path, *args: str, **env: str) -> tuple[int, dict, str, int]:
    proc = start(repo, *args, **env)
    out, err = proc.communicate("hello\n", timeout=120)
    return proc.returncode, json.loads(out.splitlines()[0]), err, proc.pid


def server_logs() -> str:
    base = Path(os.environ["XDG_RUNTIME_DIR"])
    return "".join(p.read_text() for p in base.glob("keras-pipeline-*/*.log"))


def _wait_for(path: Path) -> int:
    for _ in range(600):
        if path.exists() and path.read_text():
            return int(path.read_text())
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def proc_stat(pid: int) -> list[str]:
    """Fields 3... of /proc/PID/stat: [0] the state (Z: zombie), [19] the start time."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except (FileNotFoundError, ProcessLookupError):  # gone before the open, or before the read
        return [""]


def proc_state(pid: int) -> str | None:
    return proc_stat(pid)[0] or None


def gone(pid: int) -> bool:
    """Dead, even if only a zombie (an orphan's reaper is whatever PID 1 is)."""
    for _ in range(200):
        if proc_state(pid) in (None, "Z"):
            return True
        time.sleep(0.05)
    return False


def start_sleeper(repo: Path) -> tuple[subprocess.Popen, int]:
    """A caller whose stage sleeps, and the stage's pid once it runs."""
    proc = start(repo, "sleep")
    proc.stdin.write("x\n")
    proc.stdin.flush()
    return proc, _wait_for(repo / "started")
