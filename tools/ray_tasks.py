"""The Ray task of tools/ray_repro.py: run one stage's commands on whichever node Ray picks.

The commands are DVC's (dvc.yaml's `cmd`, so `python -m tools.prefork ...`: each node keeps
its own warm server), each started as DVC starts it (tools/dvc_graph.py: `$SHELL` with the
flags that keep it from reading rc files). Shipped to workers by value, so a node needs only
the repository at the same path, not this module on its Python path.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import ray

# Stage logs: in .dvc/tmp, which git and DVC ignore.
LOG_DIR = Path(".dvc") / "tmp" / "ray_repro"
PR_SET_PDEATHSIG = 1
POLL_S = 0.1

# Started next to each command (python -I -S: no site, ~10 ms), in a session of its own. It
# reads a pipe whose write end only the worker holds: a byte means the command exited on its
# own; EOF without one means it did not (stopped, killed by a signal) or the worker died,
# even by SIGKILL. Then it stops the command's whole process group as _stop does:
# PR_SET_PDEATHSIG reaches the shell only, not what it forked (`a; b` runs b in a child,
# which a fork clears it in; dash, Debian's /bin/sh, forks even a lone command). It forks
# once and its first process exits: a Ray worker that exits SIGKILLs its children
# (kill_child_processes_on_worker_exit, on by default), which took the watchdog with the
# shell and left the shell's children.
WATCHDOG = """
import os, signal, sys, time
if os.fork():
    os._exit(0)
fd, group, timeout_s = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
signal.signal(signal.SIGINT, signal.SIG_IGN)
if not os.read(fd, 1):
    try:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            os.killpg(group, sig)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                time.sleep(0.05)
                os.killpg(group, 0)
    except ProcessLookupError:
        pass
"""


def _stop(proc: subprocess.Popen, timeout_s: float) -> None:
    """SIGTERM the command's process group (prefork relays it to the stage), then SIGKILL."""
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, timeout_s)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _wait(proc: subprocess.Popen, copier: threading.Thread) -> int | None:
    """The exit code, as soon as the command ends, or None after POLL_S: the caller stays in
    Python code, where Ray's cancel can reach it. Waiting on the output's end (the thread
    copying it) wakes at once; Popen.wait's own polling sleeps up to 50 ms between checks,
    ~25 ms per stage on average, which a graph of many short stages pays one by one."""
    copier.join(POLL_S)  # the command's output ends when it exits (or closes it)
    try:
        # Output ended: the exit is a moment away. Else exited already, or still running.
        return proc.wait(POLL_S if not copier.is_alive() else 0)
    except subprocess.TimeoutExpired:
        return None


def _copy(source: Any, log: Any, name: str) -> None:
    """Each line to the log and, prefixed with the stage name, to Ray's log stream."""
    for line in source:
        log.write(line)
        log.flush()
        sys.stdout.write(f"[{name}] {line.decode(errors='replace')}")
        sys.stdout.flush()


def _watch(group: int, stop_timeout_s: float) -> int:
    """Start WATCHDOG on the process group; the pipe end to write b"x" to once the command
    exited on its own, and to close in any case (closed alone: the watchdog stops the group)."""
    read, write = os.pipe()  # not inheritable: the command's processes do not hold it
    try:
        subprocess.run(  # returns once the watchdog has forked: it is no child of the worker
            [
                sys.executable,
                "-I",
                "-S",
                "-c",
                WATCHDOG,
                str(read),
                str(group),
                str(stop_timeout_s),
            ],
            pass_fds=(read,),
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # not stopped with the worker's group or by a tty ^C
            check=True,
        )
    except BaseException:
        os.close(write)
        raise
    finally:
        os.close(read)
    return write


def stage(
    name: str,
    cmds: list[list[str]],
    cwd: str,
    env: dict[str, str],
    log: str,
    stop_timeout_s: float,
) -> dict[str, Any]:
    """Run the commands (argv lists, as DVC starts them; the last item is the command line)
    in order (as DVC does: stop at the first failure), output to the log and, line by line and
    prefixed with the stage name, to Ray's log stream (the driver)."""
    # Looked up here, not between fork and exec: in a process with threads (a Ray worker) the
    # child may then only call what is resolved already, not the dynamic loader (its locks
    # may have been held by another thread at fork).
    prctl, worker = ctypes.CDLL(None, use_errno=True).prctl, os.getpid()

    def die_with_worker() -> None:
        """In the command's process: SIGTERM it when the Ray worker that started it dies."""
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != worker:  # the worker died before prctl
            os._exit(1)

    start, code = time.monotonic(), 0
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        for argv in cmds:
            out.write(f"$ {argv[-1]}\n".encode())
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own group: stopped as a whole, not by a tty ^C
                preexec_fn=die_with_worker,
            )
            # Output is copied by a thread, so this one stays in Python code, where Ray's
            # cancel (a KeyboardInterrupt) can reach it.
            copier = threading.Thread(target=_copy, args=(proc.stdout, out, name), daemon=True)
            watchdog, ended = None, False
            try:
                watchdog = _watch(proc.pid, stop_timeout_s)
                copier.start()
                while (code := _wait(proc, copier)) is None:
                    pass
                # A shell killed by a signal (code -N) may leave what it forked running: so
                # when Ray SIGKILLs it as its worker exits, and this loop sees that first.
                ended = code >= 0
            except BaseException:  # ray.cancel (KeyboardInterrupt), worker shutdown
                _stop(proc, stop_timeout_s)
                raise
            finally:
                if watchdog is not None:
                    if ended:  # on its own: what it left running keeps running, as under DVC
                        with contextlib.suppress(BrokenPipeError):  # it exited already
                            os.write(watchdog, b"x")
                    os.close(watchdog)  # else the watchdog stops the rest of the group
                if copier.is_alive():
                    copier.join(stop_timeout_s)
            if code:
                break
    return {"code": code, "seconds": time.monotonic() - start, "log": log}


def task(*args: Any) -> dict[str, Any]:
    """stage() as a Ray task, and the node Ray ran it on."""
    return {**stage(*args), "node": ray.get_runtime_context().get_node_id()}


run_command = ray.remote(task)
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
