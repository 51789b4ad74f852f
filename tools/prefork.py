"""Run a stage module in a fork of a warm Python process (a forkserver shared across runs).

  python -m tools.prefork stages.train baseline   # what dvc.yaml runs: like `python -m ...`
  python -m tools.prefork --stop                  # stop this user's warm servers now

A stage process otherwise spends seconds importing TensorFlow/Keras and MLflow before any
work (docs/runner.md), once per stage of the study. The first stage starts a server
(tools/forkserver.py) that imports only the third-party modules in params.yaml's
`runner.preload` (never this repository's code, so edits to stages/ apply to the next run)
and forks one child per stage.
The child is a fresh process in every other respect: the caller's cwd, environment, argv,
stdin/stdout/stderr, umask, nice value, CPU affinity, resource limits (see forkchild.py for
the exceptions), exit status and signals (Ctrl-C, kill) are passed through. The server exits
after `runner.idle_timeout_s` without work. `runner.prefork: false` runs stages directly.
The server's socket, pid file and log live in a directory only this user may use (a request
carries the caller's environment and stdio); a stale pid file never gets a process signalled.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import runpy
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tools import forkchild, forkserver
from tools.forkchild import FIRST_PARTY, exit_like
from tools.forkserver import send_request, start_time

# Variables that differ from stage to stage or test to test and are read at run time, not at
# import time: the forked child gets them anyway, so they must not split servers. Among them
# what the callers' own parents add: Ray's workers and Tune (PYTHONBREAKPOINT, TUNE_*), DVC's
# queue workers (Celery's CELERY_*, _MP_FORK_*), a venv's activate (VIRTUAL_ENV*, PS1), the
# study's MLflow buffer (study/tracking/store.py). A split starts a server: ~7 CPU-s, ~750 MB.
VOLATILE_ENV = (
    "DVC_", "PYTEST_", "MLFLOW_TRACKING_", "MLFLOW_RUN_", "MLFLOW_EXPERIMENT_", "RAY_",
    "TUNE_", "CELERY_", "_MP_FORK_", "VIRTUAL_ENV",
)  # fmt: skip
VOLATILE_NAMES = {
    "PWD", "OLDPWD", "SHLVL", "_", "DATA_MIRRORS", "SHELL", "PS1", "PYTHONBREAKPOINT",
    "MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS",
}  # fmt: skip
POLL_S = 0.02
# Linux only (pidfd); elsewhere, and where fork after importing TF is unsafe, run directly.
SUPPORTED = hasattr(os, "pidfd_open") and hasattr(signal, "pidfd_send_signal")
RUNNER_KEYS = ("prefork", "idle_timeout_s", "start_timeout_s", "preload")


def socket_dir() -> Path:
    """Private per-user directory for server sockets, pid files and logs (else exits)."""
    base = os.environ.get("XDG_RUNTIME_DIR") or "/tmp"
    path = Path(base) / f"keras-pipeline-{os.getuid()}"
    try:
        path.mkdir(mode=0o700)
        os.chmod(path, 0o700)  # whatever the umask
    except FileExistsError:
        pass
    st = os.lstat(path)  # not stat: a symlink could lead anywhere
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        problem, fix = "is a symlink or not a directory", "remove it or "
    elif st.st_uid != os.getuid():
        problem, fix = f"belongs to uid {st.st_uid}", ""
    elif mode != 0o700:
        problem, fix = f"has mode {mode:04o}, not 0700", "`chmod 700` it or "
    else:
        return path
    need = "the warm runner needs a private directory"
    sys.exit(f"error: {path} {problem} ({need}): {fix}set XDG_RUNTIME_DIR to one of yours")


def server_key(preload: list[str]) -> str:
    """Servers are shared only between callers whose imports would come out the same."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(VOLATILE_ENV) and k not in VOLATILE_NAMES
    }
    paths = [p for p in sys.path[1:] if p]
    # A pip install changes its site-packages directory's mtime.
    mtimes = [os.stat(p).st_mtime_ns if os.path.isdir(p) else 0 for p in paths]
    own = b"".join(
        Path(f).read_bytes() for f in (__file__, forkserver.__file__, forkchild.__file__)
    )
    blob = json.dumps([sys.executable, sys.version, paths, mtimes, sorted(env.items()), preload])
    return hashlib.sha256(blob.encode() + own).hexdigest()[:20]


def connect(sock_path: Path) -> socket.socket | None:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(sock_path))
    except (FileNotFoundError, ConnectionRefusedError):
        conn.close()
        return None
    return conn


def connect_or_start(sock_path: Path, runner: dict[str, Any]) -> socket.socket | None:
    """A connection to the warm server, starting it if needed; None if it cannot start."""
    conn = connect(sock_path)
    if conn is not None:
        return conn
    with open(sock_path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one starter; the others wait and then connect
        conn = connect(sock_path)
        if conn is not None:
            return conn
        log = sock_path.with_suffix(".log")
        cmd = [sys.executable, forkserver.__file__, str(sock_path), str(runner["idle_timeout_s"])]
        with open(log, "a") as out:
            server = subprocess.Popen(
                [*cmd, *runner["preload"]],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        deadline = time.monotonic() + runner["start_timeout_s"]
        while time.monotonic() < deadline and server.poll() is None:
            conn = connect(sock_path)
            if conn is not None:
                return conn
            time.sleep(POLL_S)
        server.kill()
        print(f"prefork: no warm server (see {log}); running directly", file=sys.stderr)
        return None


def run_forked(conn: socket.socket, module: str, args: list[str]) -> int | None:
    """Hand the request to the server, relay signals to the child, return its exit code.

    None if the server closed without taking the request (it was shutting down)."""
    reader = conn.makefile("rb")
    try:
        send_request(conn, module, args)
        line = reader.readline()
    except OSError:
        return None
    if not line:
        return None
    pid = json.loads(line)["pid"]
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, lambda signum, _: os.kill(pid, signum))
    line = reader.readline()
    if not line:
        print(f"prefork: the server ended before stage process {pid} did", file=sys.stderr)
        return 1
    return json.loads(line)["exit"]


def runner_settings(params: dict[str, Any]) -> dict[str, Any]:
    """The validated `runner` section of params.yaml."""
    from study.config.errors import ConfigError
    from study.config.raw import require

    runner = {k: require(params, f"runner.{k}") for k in RUNNER_KEYS}
    if not isinstance(runner["prefork"], bool):
        raise ConfigError(f"runner.prefork: must be true or false, got {runner['prefork']!r}")
    for key in ("idle_timeout_s", "start_timeout_s"):
        value = runner[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"runner.{key}: must be a number > 0, got {value!r}")
    preload = runner["preload"]
    if not isinstance(preload, list) or not all(isinstance(m, str) and m for m in preload):
        raise ConfigError(
            f"runner.preload: must be a list of module names (or module:function), got {preload!r}"
        )
    own = [m for m in preload if m.split(":")[0].split(".")[0] in FIRST_PARTY]
    if own:
        # A warm copy of this repository's code would go stale when it is edited.
        raise ConfigError(
            f"runner.preload: {', '.join(own)}: only third-party modules may be preloaded,"
            f" not {', '.join(FIRST_PARTY)}"
        )
    return runner


def stop_servers() -> None:
    """SIGTERM this user's servers; drop pid files whose process is gone (or a reused pid's)."""
    for pid_file in socket_dir().glob("*.pid"):
        try:
            pid, started = pid_file.read_text().split()
            pidfd = os.pidfd_open(int(pid))
        except (ValueError, OSError):
            pid_file.unlink(missing_ok=True)
            continue
        try:  # checked after pidfd_open, so a match means the pidfd is the server's
            if start_time(int(pid)) == started:
                signal.pidfd_send_signal(pidfd, signal.SIGTERM)
            else:
                pid_file.unlink(missing_ok=True)
        except ProcessLookupError:
            pid_file.unlink(missing_ok=True)
        finally:
            os.close(pidfd)


def main() -> None:
    if sys.argv[1:] == ["--stop"]:
        stop_servers()
        return
    if len(sys.argv) < 2:
        sys.exit("usage: python -m tools.prefork MODULE [ARGS...] | --stop")
    module, args = sys.argv[1], sys.argv[2:]
    from study.config.errors import StageError
    from study.config.raw import read_params

    try:
        runner = runner_settings(read_params(Path.cwd()))
    except StageError as err:
        sys.exit(f"error: {err}")
    if runner["prefork"] and SUPPORTED:
        sock_path = socket_dir() / f"{server_key(runner['preload'])}.sock"
        for _ in range(2):  # a server found shutting down is replaced once
            conn = connect_or_start(sock_path, runner)
            code = None if conn is None else run_forked(conn, module, args)
            if code is not None:
                exit_like(code)
                sys.exit(128 - code if code < 0 else code)  # as a shell reports death by -code
            if conn is None:
                break
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
