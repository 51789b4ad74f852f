"""The warm server behind tools/prefork.py: import once, fork one child per stage run.

  python tools/forkserver.py SOCKET IDLE_TIMEOUT_S MODULE...   # started by tools.prefork

It imports the given third-party modules, listens on the Unix socket SOCKET and, per request,
forks a child that becomes the caller's `python -m module args` process (the caller's cwd,
environment, argv, stdin/stdout/stderr passed as fds, umask, nice value, CPU affinity and
resource limits: tools/forkchild.py, the child side, has the exceptions). It reports each
child's exit code to its caller, kills a child whose caller is gone, logs one JSON line per
child (wall time, peak RSS) to stdout, and exits after IDLE_TIMEOUT_S without work or on
SIGTERM, once its children are done. If it is killed, its children die with it
(PR_SET_PDEATHSIG): nobody would report their exit. A caller can only break its own connection:
requests are read without blocking, and dropped if incomplete after REQUEST_TIMEOUT_S. Standard
library only, so a caller can import the protocol cheaply.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import resource
import selectors
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__:  # imported, e.g. by tools.prefork for the protocol
    from .forkchild import RLIMITS, become
else:  # run as a script, as tools.prefork starts the server: sys.path[0] is tools/
    from forkchild import RLIMITS, become

HEADER = struct.Struct("!Q")
REQUEST_TIMEOUT_S = 10
MAX_REQUEST = 64 << 20  # a garbage header must not make the server buffer without bound
KEYS = {"module", "args", "cwd", "env", "umask", "nice", "cpus", "rlimits"}
PR_SET_PDEATHSIG = 1


def send_request(conn: socket.socket, module: str, args: list[str]) -> None:
    umask = os.umask(0o077)  # the only way to read it (restrictive for that instant)
    os.umask(umask)
    req = {"module": module, "args": args, "cwd": os.getcwd(), "env": dict(os.environ)}
    req |= {"umask": umask, "nice": os.getpriority(os.PRIO_PROCESS, 0)}
    req["cpus"] = sorted(os.sched_getaffinity(0))
    req["rlimits"] = {name: resource.getrlimit(getattr(resource, name)) for name in RLIMITS}
    payload = json.dumps(req).encode()
    socket.send_fds(conn, [HEADER.pack(len(payload))], [0, 1, 2])
    conn.sendall(payload)


@dataclass
class Pending:
    """A request as it arrives, read piece by piece when readable: no caller is waited for."""

    conn: socket.socket
    deadline: float = field(default_factory=lambda: time.monotonic() + REQUEST_TIMEOUT_S)
    data: bytes = b""
    fds: list[int] = field(default_factory=list)

    def read(self) -> dict[str, Any] | None:
        """The request with its three fds once complete; raises OSError/ValueError if broken."""
        data, fds, _, _ = socket.recv_fds(self.conn, 1 << 16, 3)
        self.fds += fds
        if not data:
            raise ConnectionError("request cut short")
        self.data += data
        size = HEADER.unpack_from(self.data)[0] if len(self.data) >= HEADER.size else 0
        if size > MAX_REQUEST or len(self.fds) > 3:
            raise ValueError("not a request")
        if not size or len(self.data) < HEADER.size + size:
            return None
        req = json.loads(self.data[HEADER.size : HEADER.size + size])
        if not isinstance(req, dict) or not req.keys() >= KEYS or not isinstance(req["args"], list):
            raise ValueError("not a request")
        if len(self.fds) != 3:
            raise ValueError("request without its three fds")
        return {**req, "fds": self.fds}

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.conn.close()


@dataclass
class Child:
    pidfd: int
    conn: socket.socket | None  # None once the caller is gone
    label: str
    start: float = field(default_factory=time.monotonic)


def preload_modules(preload: list[str]) -> None:
    """Import each module of `preload`. An entry `module:function` also calls that function
    once, after importing the module: per-process caches a library fills on first use (e.g.
    MLflow's map of installed packages, ~0.6 s per logged model's first save) are then filled
    once for every stage."""
    for name in preload:
        module, _, function = name.partition(":")
        imported = importlib.import_module(module)
        if function:
            getattr(imported, function)()


def serve(sock_path: Path, idle_timeout: float, preload: list[str]) -> dict[str, Any] | None:
    """Import `preload` (preload_modules), then fork a child per request. Returns only in a
    child, its request."""
    import ctypes  # here, not at the top: callers import this module too

    preload_modules(preload)
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    os.chdir("/")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tmp = sock_path.with_name(f"{sock_path.name}.{os.getpid()}")
    listener.bind(str(tmp))
    listener.listen(64)
    listener.setblocking(False)
    os.replace(tmp, sock_path)  # published only once it accepts
    inode = sock_path.stat().st_ino
    server = os.getpid()
    # With its start time the pid names this process, even once the pid is reused.
    tmp.write_text(f"{server} {start_time(server)}\n")
    os.replace(tmp, sock_path.with_suffix(".pid"))
    stopping: list[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, ("accept", None))
    children: dict[int, Child] = {}
    idle_since = time.monotonic()
    print(f"server {server} ready: {sock_path}", flush=True)
    while listener.fileno() != -1 or children:
        for key, _ in sel.select(timeout=1.0):
            if sel.get_map().get(key.fd) is not key:
                continue  # closed by an earlier event of this batch (reaped, caller gone)
            kind, data = key.data
            if kind == "accept":
                with contextlib.suppress(OSError):  # e.g. the caller is gone already
                    conn, _ = listener.accept()
                    conn.setblocking(False)
                    sel.register(conn, selectors.EVENT_READ, ("request", Pending(conn)))
            elif kind == "request":
                try:
                    req = data.read()
                except BlockingIOError:
                    continue
                except (OSError, ValueError):
                    _drop(sel, data)
                    continue
                if req is None:
                    continue
                sel.unregister(data.conn)
                try:
                    pid = os.fork()
                except OSError:  # e.g. RLIMIT_NPROC: the caller then runs the stage directly
                    data.close()
                    continue
                if pid == 0:  # the child: dies with the server, keeps only its request's fds
                    prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
                    if os.getppid() != server:  # the server died before prctl
                        os._exit(1)
                    _close_all(sel)
                    data.conn.close()
                    return req
                child = _watch(sel, pid, data.conn, req)
                if child:
                    children[pid] = child
            elif kind == "exit":
                _reap(sel, data, children.pop(data))
                idle_since = time.monotonic()
            elif kind == "caller" and _hung_up(key.fileobj):
                _abandon(sel, children[data])
        now = time.monotonic()
        for key in list(sel.get_map().values()):
            if key.data[0] == "request" and key.data[1].deadline < now:
                _drop(sel, key.data[1])  # connected and stalled: it gets nowhere
        idle = not children and now - idle_since > idle_timeout
        if listener.fileno() != -1 and (stopping or idle or _replaced(sock_path, inode)):
            sel.unregister(listener)
            listener.close()  # no new work; running children still report back
            if not _replaced(sock_path, inode):
                sock_path.unlink(missing_ok=True)
                sock_path.with_suffix(".pid").unlink(missing_ok=True)
    return None


def _watch(
    sel: selectors.BaseSelector, pid: int, conn: socket.socket, req: dict[str, Any]
) -> Child | None:
    """Watch a new child and tell its caller the pid; if the caller is gone, kill the child."""
    for fd in req["fds"]:
        os.close(fd)
    try:
        child = Child(os.pidfd_open(pid), conn, " ".join(map(str, [req["module"], *req["args"]])))
    except OSError:  # e.g. out of fds: a child nobody watches must not run
        os.kill(pid, signal.SIGKILL)  # not yet waited for, so the pid is still this child's
        os.waitpid(pid, 0)
        conn.close()
        return None
    sel.register(child.pidfd, selectors.EVENT_READ, ("exit", pid))
    if _send(conn, {"pid": pid}):
        sel.register(conn, selectors.EVENT_READ, ("caller", pid))
    else:
        _abandon(sel, child)  # reaped when its exit is seen, like any other
    return child


def _send(conn: socket.socket, message: dict[str, int]) -> bool:
    """One line to a caller, False if it is gone. The socket does not block: a line fits."""
    try:
        conn.sendall(json.dumps(message).encode() + b"\n", socket.MSG_NOSIGNAL)
    except OSError:
        return False
    return True


def _hung_up(conn: socket.socket) -> bool:
    try:
        return not conn.recv(1)
    except BlockingIOError:
        return False
    except OSError:
        return True


def _abandon(sel: selectors.BaseSelector, child: Child) -> None:
    """The caller is gone (e.g. kill -9): its stage must not outlive it."""
    with contextlib.suppress(OSError):
        signal.pidfd_send_signal(child.pidfd, signal.SIGKILL)
    if child.conn:
        with contextlib.suppress(KeyError):
            sel.unregister(child.conn)
        child.conn.close()
        child.conn = None


def _drop(sel: selectors.BaseSelector, pending: Pending) -> None:
    sel.unregister(pending.conn)
    pending.close()


def _close_all(sel: selectors.BaseSelector) -> None:
    """In a new child, close what the server watches. No unregister: the epoll set is shared."""
    for key in sel.get_map().values():
        if isinstance(key.data[1], Pending):
            key.data[1].close()
        elif isinstance(key.fileobj, socket.socket):
            key.fileobj.close()
        else:
            os.close(key.fd)
    sel.close()


def _reap(sel: selectors.BaseSelector, pid: int, child: Child) -> None:
    """Collect an exited child, tell its caller the exit code, log time and peak RSS."""
    _, status, usage = os.wait4(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    sel.unregister(child.pidfd)
    os.close(child.pidfd)
    if child.conn:
        sel.unregister(child.conn)
        _send(child.conn, {"exit": code})  # the caller may be gone by now
        child.conn.close()
    wall = round(time.monotonic() - child.start, 2)
    log = {"run": child.label, "exit": code, "s": wall, "maxrss_kb": usage.ru_maxrss}
    print(json.dumps(log), flush=True)


def _replaced(sock_path: Path, inode: int) -> bool:
    try:
        return sock_path.stat().st_ino != inode
    except FileNotFoundError:
        return True


def start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (clock ticks after boot), None if there is no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return None


def main() -> None:
    sock_path, idle, *preload = sys.argv[1:]
    req = serve(Path(sock_path), float(idle), preload)
    if req is not None:
        become(req)


if __name__ == "__main__":
    main()
