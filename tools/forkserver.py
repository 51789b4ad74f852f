"""The warm server behind tools/prefork.py: import once, fork one child per stage run.

  python tools/forkserver.py SOCKET IDLE_TIMEOUT_S MODULE...   # started by tools.prefork

It imports the given third-party modules, listens on the Unix socket SOCKET and, per
request, forks a child that becomes the caller's `python -m module args` process (the
caller's cwd, environment, argv, stdin/stdout/stderr passed as fds, umask, nice value, CPU
affinity and resource limits). It reports each child's exit code to its caller, kills a child
whose caller is gone, logs one JSON line per child (wall time, peak RSS) to stdout, and exits
after IDLE_TIMEOUT_S without work or on SIGTERM, once its children are done. If it is killed,
its children die with it (PR_SET_PDEATHSIG): nobody would report their exit. A caller can
only break its own connection: requests are read without blocking, and dropped if incomplete
after REQUEST_TIMEOUT_S. Standard library only, so a caller can import the protocol cheaply.

Exceptions: unprivileged, a process cannot raise a hard resource limit or lower its nice value,
so a stage gets at most the server's hard limits and at least its nice value (those of the
caller that started it; `python -m tools.prefork --stop` to start afresh). CPUs outside the
server's cpuset are left out. RLIMIT_STACK does not change the default stack size of new
threads (glibc fixed it when the server started).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import resource
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
REQUEST_TIMEOUT_S = 10
MAX_REQUEST = 64 << 20  # a garbage header must not make the server buffer without bound
KEYS = {"module", "args", "cwd", "env", "umask", "nice", "cpus", "rlimits"}
RLIMITS = [n for n in dir(resource) if n.startswith("RLIMIT_") and n != "RLIMIT_OFILE"]  # alias
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


def serve(sock_path: Path, idle_timeout: float, preload: list[str]) -> dict[str, Any] | None:
    """Import `preload`, then fork a child per request. Returns only in a child, its request."""
    import ctypes  # here, not at the top: callers import this module too

    for name in preload:
        importlib.import_module(name)
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


def become(req: dict[str, Any]) -> None:
    """Turn the forked child into the caller's `python -m module args` process."""
    for target, fd in zip((0, 1, 2), req["fds"], strict=True):
        os.dup2(fd, target)
        os.close(fd)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    take_on(req)
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


def take_on(req: dict[str, Any]) -> None:
    """Take the caller's umask, resource limits, nice value and CPUs, as far as allowed."""
    os.umask(req["umask"])
    for name in RLIMITS:
        which, (soft, hard) = getattr(resource, name), req["rlimits"][name]
        with contextlib.suppress(OSError, ValueError):
            try:
                resource.setrlimit(which, (soft, hard))
            except ValueError:  # above our hard limit, unprivileged: as close as allowed
                cap = resource.getrlimit(which)[1]
                resource.setrlimit(which, (_lower(soft, cap), _lower(hard, cap)))
    with contextlib.suppress(OSError):  # lowering it takes privilege or RLIMIT_NICE (set above)
        os.setpriority(os.PRIO_PROCESS, 0, req["nice"])
    with contextlib.suppress(OSError, ValueError):  # e.g. no allowed CPU among them
        os.sched_setaffinity(0, req["cpus"])


def _lower(a: int, b: int) -> int:
    """min() of two resource limits, where RLIM_INFINITY is no limit."""
    inf = resource.RLIM_INFINITY
    return b if a == inf else a if b == inf else min(a, b)


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
