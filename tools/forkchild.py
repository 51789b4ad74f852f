"""The child side of tools/forkserver.py: a fresh fork becomes the caller's stage process.

The server forks a child per request; `become` turns it into the caller's `python -m module
args` process (the caller's stdin/stdout/stderr, cwd, environment, argv, umask, nice value,
CPU affinity and resource limits; this repository's modules imported afresh), runs the module
and leaves like an exiting interpreter, with the stage's exit code or death by its signal.
Standard library only, like forkserver.py: tools/prefork.py imports `exit_like` from here too.

Exceptions: unprivileged, a process cannot raise a hard resource limit or lower its nice value,
so a stage gets at most the server's hard limits and at least its nice value (those of the
caller that started it; `python -m tools.prefork --stop` to start afresh). CPUs outside the
server's cpuset are left out. RLIMIT_STACK does not change the default stack size of new
threads (glibc fixed it when the server started).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import resource
import runpy
import signal
import sys
import threading
import traceback
from typing import Any

# This repository's packages: each stage imports them afresh.
FIRST_PARTY = ("stages", "study", "tools", "bench", "tests")
UNCATCHABLE = {signal.SIGKILL, signal.SIGSTOP}
RLIMITS = [n for n in dir(resource) if n.startswith("RLIMIT_") and n != "RLIMIT_OFILE"]  # alias


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
    """For a negative code (death by signal -code), die by that signal, as the stage did: the
    parent then sees death by it (a shell's status 128 + N). Returns if the signal did not
    kill (one whose default action is to ignore or stop, which no stage dies of)."""
    if code < 0:
        if -code not in UNCATCHABLE:  # these have no handler to reset: signal() fails (EINVAL)
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
