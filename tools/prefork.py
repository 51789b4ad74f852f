"""Run a stage module in a fork of a warm Python process (a forkserver shared across runs).

  python -m tools.prefork stages.train baseline   # what dvc.yaml runs: like `python -m ...`
  python -m tools.prefork --stop                  # stop this user's warm servers now

A stage process otherwise spends ~9 s importing TensorFlow/Keras and MLflow before any work,
and the default study runs 38 of them. The first stage starts a server that imports only the
third-party modules in params.yaml's `runner.preload` (never this repository's code, so edits
to stages/ apply to the next run) and then forks one child per stage. The child is a fresh
process in every other respect: the caller's cwd, environment, argv, stdin/stdout/stderr, exit
status and signals (Ctrl-C, kill) are passed through. The server exits after
`runner.idle_timeout_s` without work. `runner.prefork: false` runs stages directly.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import importlib
import json
import os
import runpy
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Variables that differ from stage to stage or test to test and are read at run time, not at
# import time: the forked child gets them anyway, so they must not split servers.
VOLATILE_ENV = ("DVC_", "PYTEST_", "MLFLOW_TRACKING_", "MLFLOW_RUN_", "MLFLOW_EXPERIMENT_")
VOLATILE_NAMES = {"PWD", "OLDPWD", "SHLVL", "_", "DATA_MIRRORS"}
FIRST_PARTY = ("stages", "tools", "bench", "tests")
HEADER = struct.Struct("!Q")
POLL_S = 0.02
# Linux only (pidfd); elsewhere, and where fork after importing TF is unsafe, run directly.
SUPPORTED = hasattr(os, "pidfd_open") and hasattr(signal, "pidfd_send_signal")
RUNNER_KEYS = ("prefork", "idle_timeout_s", "start_timeout_s", "preload")


def socket_dir() -> Path:
    """Private per-user directory for server sockets, pid files and logs."""
    base = os.environ.get("XDG_RUNTIME_DIR") or "/tmp"
    path = Path(base) / f"keras-pipeline-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    if path.stat().st_uid != os.getuid():
        sys.exit(f"error: {path} belongs to another user; set XDG_RUNTIME_DIR")
    return path


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
    own = Path(__file__).read_bytes()
    blob = json.dumps([sys.executable, sys.version, paths, mtimes, sorted(env.items()), preload])
    return hashlib.sha256(blob.encode() + own).hexdigest()[:20]


def send_request(conn: socket.socket, module: str, args: list[str]) -> None:
    payload = json.dumps(
        {"module": module, "args": args, "cwd": os.getcwd(), "env": dict(os.environ)}
    ).encode()
    socket.send_fds(conn, [HEADER.pack(len(payload))], [0, 1, 2])
    conn.sendall(payload)


def receive_request(conn: socket.socket) -> dict[str, Any] | None:
    """A caller's request with its three fds, or None (fds closed) if it is incomplete."""
    conn.settimeout(10)  # a caller that connects and stalls must not stall the server
    fds: list[int] = []
    try:
        header, fds, _, _ = socket.recv_fds(conn, HEADER.size, 3)
        if len(header) != HEADER.size or len(fds) != 3:
            raise ConnectionError("short request")
        (size,) = HEADER.unpack(header)
        payload = b""
        while len(payload) < size:
            chunk = conn.recv(size - len(payload))
            if not chunk:
                raise ConnectionError("request cut short")
            payload += chunk
        conn.settimeout(None)
        return {**json.loads(payload), "fds": fds}
    except (OSError, ValueError):
        for fd in fds:
            os.close(fd)
        return None


@dataclass
class Child:
    pidfd: int
    conn: socket.socket | None  # None once the caller is gone
    label: str
    start: float = field(default_factory=time.monotonic)


def serve(sock_path: Path, idle_timeout: float, preload: list[str]) -> dict[str, Any] | None:
    """Import `preload`, then fork a child per request. Returns only in a child, its request."""
    for name in preload:
        importlib.import_module(name)
    os.chdir("/")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tmp = sock_path.with_name(f"{sock_path.name}.{os.getpid()}")
    listener.bind(str(tmp))
    listener.listen(64)
    os.replace(tmp, sock_path)  # published only once it accepts
    inode = sock_path.stat().st_ino
    sock_path.with_suffix(".pid").write_text(str(os.getpid()))
    stopping: list[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, ("accept", 0))
    children: dict[int, Child] = {}
    idle_since = time.monotonic()
    print(f"server {os.getpid()} ready: {sock_path}", flush=True)
    while listener.fileno() != -1 or children:
        for key, _ in sel.select(timeout=1.0):
            kind, pid = key.data
            if kind == "accept":
                conn, _ = listener.accept()
                req = receive_request(conn)
                if req is None:
                    conn.close()
                    continue
                pid = os.fork()
                if pid == 0:  # the child: drop the server's descriptors, become the stage
                    sel.close()
                    listener.close()
                    for child in children.values():
                        os.close(child.pidfd)
                        if child.conn:
                            child.conn.close()
                    conn.close()
                    return req
                for fd in req["fds"]:
                    os.close(fd)
                conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
                children[pid] = Child(
                    os.pidfd_open(pid), conn, " ".join([req["module"], *req["args"]])
                )
                sel.register(children[pid].pidfd, selectors.EVENT_READ, ("exit", pid))
                sel.register(conn, selectors.EVENT_READ, ("caller", pid))
            elif kind == "exit":
                _reap(sel, pid, children.pop(pid))
                idle_since = time.monotonic()
            elif kind == "caller" and not key.fileobj.recv(1):
                # The caller died (e.g. kill -9): its stage must not outlive it.
                child = children[pid]
                signal.pidfd_send_signal(child.pidfd, signal.SIGKILL)
                sel.unregister(child.conn)
                child.conn.close()
                child.conn = None
        idle = not children and time.monotonic() - idle_since > idle_timeout
        if listener.fileno() != -1 and (stopping or idle or _replaced(sock_path, inode)):
            sel.unregister(listener)
            listener.close()  # no new work; running children still report back
            if not _replaced(sock_path, inode):
                sock_path.unlink(missing_ok=True)
                sock_path.with_suffix(".pid").unlink(missing_ok=True)
    return None


def _reap(sel: selectors.BaseSelector, pid: int, child: Child) -> None:
    """Collect an exited child, tell its caller the exit code, log time and peak RSS."""
    _, status, usage = os.wait4(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    sel.unregister(child.pidfd)
    os.close(child.pidfd)
    if child.conn:
        sel.unregister(child.conn)
        with contextlib.suppress(OSError):  # the caller may be gone by now
            child.conn.sendall(json.dumps({"exit": code}).encode() + b"\n")
        child.conn.close()
    wall = round(time.monotonic() - child.start, 2)
    log = {"run": child.label, "exit": code, "s": wall, "maxrss_kb": usage.ru_maxrss}
    print(json.dumps(log), flush=True)


def _replaced(sock_path: Path, inode: int) -> bool:
    try:
        return sock_path.stat().st_ino != inode
    except FileNotFoundError:
        return True


def become(req: dict[str, Any]) -> None:
    """Turn the forked child into the caller's `python -m module args` process."""
    for target, fd in zip((0, 1, 2), req["fds"], strict=True):
        os.dup2(fd, target)
        os.close(fd)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    sys.stdout.reconfigure(line_buffering=os.isatty(1), write_through=unbuffered)
    sys.stderr.reconfigure(line_buffering=True)
    for name in [m for m in sys.modules if m.split(".")[0] in FIRST_PARTY]:
        del sys.modules[name]
    sys.path[0] = req["cwd"]  # as `python -m` sets it
    sys.argv = [req["module"], *req["args"]]
    os._exit(run_and_shut_down(req["module"]))


def run_and_shut_down(module: str) -> int:
    """Run `module` as __main__ and do what interpreter exit does that matters, return the code.

    Like a multiprocessing child, the fork then leaves with os._exit: non-daemon threads are
    joined and atexit handlers run (MLflow flushes its async logging there), but the module
    teardown of a TensorFlow-sized heap is skipped (2.5 s per stage process, measured).
    """
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        traceback.print_exc()
        code = -signal.SIGINT  # Python reports an uncaught Ctrl-C as death by SIGINT
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    threading._shutdown()  # type: ignore[attr-defined]  # the interpreter's first exit step
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code & 0xFF


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
        cmd = [sys.executable, __file__, "--serve", str(sock_path), str(runner["idle_timeout_s"])]
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
    from stages.params import ConfigError, require

    runner = {k: require(params, f"runner.{k}") for k in RUNNER_KEYS}
    if not isinstance(runner["prefork"], bool):
        raise ConfigError(f"runner.prefork: must be true or false, got {runner['prefork']!r}")
    for key in ("idle_timeout_s", "start_timeout_s"):
        value = runner[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"runner.{key}: must be a number > 0, got {value!r}")
    preload = runner["preload"]
    if not isinstance(preload, list) or not all(isinstance(m, str) and m for m in preload):
        raise ConfigError(f"runner.preload: must be a list of module names, got {preload!r}")
    own = [m for m in preload if m.split(".")[0] in FIRST_PARTY]
    if own:
        # A warm copy of this repository's code would go stale when it is edited.
        raise ConfigError(
            f"runner.preload: {', '.join(own)}: only third-party modules may be preloaded,"
            f" not {', '.join(FIRST_PARTY)}"
        )
    return runner


def stop_servers() -> None:
    for pid_file in socket_dir().glob("*.pid"):
        try:
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
        except (ProcessLookupError, ValueError):
            pid_file.unlink(missing_ok=True)


def main() -> None:
    if sys.argv[1:2] == ["--serve"]:
        sock_path, idle, *preload = sys.argv[2:]
        req = serve(Path(sock_path), float(idle), preload)
        if req is not None:
            become(req)
        return
    if sys.argv[1:] == ["--stop"]:
        stop_servers()
        return
    if len(sys.argv) < 2:
        sys.exit("usage: python -m tools.prefork MODULE [ARGS...] | --stop")
    module, args = sys.argv[1], sys.argv[2:]
    from stages.params import StageError, load_params

    try:
        runner = runner_settings(load_params(Path.cwd()))
    except StageError as err:
        sys.exit(f"error: {err}")
    if runner["prefork"] and SUPPORTED:
        sock_path = socket_dir() / f"{server_key(runner['preload'])}.sock"
        for _ in range(2):  # a server found shutting down is replaced once
            conn = connect_or_start(sock_path, runner)
            code = None if conn is None else run_forked(conn, module, args)
            if code is not None:
                if code < 0:  # killed by a signal: die the same way, as the stage did
                    signal.signal(-code, signal.SIG_DFL)
                    os.kill(os.getpid(), -code)
                sys.exit(code)
            if conn is None:
                break
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
