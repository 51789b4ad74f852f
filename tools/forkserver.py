"""The warm server behind tools/prefork.py: import once, fork one child per stage run.

  python tools/forkserver.py SOCKET IDLE_TIMEOUT_S MODULE...   # started by tools.prefork

It imports the given third-party modules, listens on the Unix socket SOCKET and, per
request, forks a child that becomes the caller's `python -m module args` process (the
caller's cwd, environment, argv and stdin/stdout/stderr, passed as fds). It reports each
child's exit code to its caller, kills a child whose caller is gone, logs one JSON line per
child (wall time, peak RSS) to stdout, and exits after IDLE_TIMEOUT_S without work or on
SIGTERM. Standard library only, so a caller can import the protocol cheaply.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import runpy
import selectors
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FIRST_PARTY = ("stages", "tools", "bench", "tests")
HEADER = struct.Struct("!Q")


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
    exit_like(code)
    return code & 0xFF


def exit_like(code: int) -> None:
    """For a negative code (death by signal -code), die by that signal, as the stage did."""
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)


def main() -> None:
    sock_path, idle, *preload = sys.argv[1:]
    req = serve(Path(sock_path), float(idle), preload)
    if req is not None:
        become(req)


if __name__ == "__main__":
    main()
