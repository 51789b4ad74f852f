"""tools/ray_tasks.py: a stage's commands in a Ray worker, stopped with it however it ends.

The worker here is a plain Python process running stage(), as a Ray worker would (another
thread running); tests/tools/test_ray_repro.py runs stages on a real Ray instance.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from bench.workspace import pipeline_env
from study.config.paths import REPO_ROOT

# stage() in a process with another thread running, as in a Ray worker: a dynamic-loader
# lookup between fork and exec (in preexec_fn) fails the command. The command line is DVC's
# argv for it (tools/dvc_graph.start).
TASK = """
import ctypes, os, sys, threading
real, parent = ctypes.CDLL, os.getpid()
def cdll(*args, **kwargs):
    assert os.getpid() == parent, "ctypes.CDLL between fork and exec"
    return real(*args, **kwargs)
ctypes.CDLL = cdll
from tools.ray_tasks import stage
threading.Thread(target=threading.Event().wait, daemon=True).start()
stage("probe", [["/bin/sh", "-c", sys.argv[1]]], os.getcwd(), dict(os.environ), "probe.log", 5)
"""


def start_task(cwd: Path, cmd: str) -> tuple[subprocess.Popen, int]:
    """TASK running `cmd` (which first echoes its shell's pid), and that pid once it runs."""
    env = pipeline_env(PYTHONPATH=str(REPO_ROOT))
    worker = subprocess.Popen(
        [sys.executable, "-c", TASK, cmd], cwd=cwd, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    line = worker.stdout.readline()  # the command's first line: it runs
    assert line.startswith("[probe] "), line + worker.communicate(timeout=60)[1]
    return worker, int(line.split()[1])


def test_a_command_dies_with_its_worker_and_nothing_is_looked_up_after_fork(tmp_path):
    worker, shell = start_task(tmp_path, "echo $$; exec sleep 120")
    pidfd = os.pidfd_open(shell)
    worker.kill()
    worker.communicate(timeout=60)
    # PR_SET_PDEATHSIG: the command gets SIGTERM when its worker dies (readable: it exited).
    assert select.select([pidfd], [], [], 30)[0], "the command outlived its worker"
    os.close(pidfd)


@pytest.mark.parametrize("end", ["worker-killed", "worker-exits-as-ray-does", "shell-killed"])
def test_what_a_command_line_forked_dies_with_its_worker(tmp_path, end):
    # `a; b; c`: the shell forks b, and a fork clears PR_SET_PDEATHSIG: b is stopped with the
    # command's process group when the worker dies, even by SIGKILL. A Ray worker that exits
    # (e.g. its raylet died with a killed `make repro`) first SIGKILLs its direct children
    # (kill_child_processes_on_worker_exit): the shell, and once the watchdog too. Its task
    # may then see the shell gone before the worker exits: a command killed, not ended.
    worker, shell = start_task(tmp_path, "echo $$; sleep 120; true")
    deadline = time.monotonic() + 30
    while [p.name() for p in psutil.Process(shell).children()] != ["sleep"]:  # forked, exec'd
        assert time.monotonic() < deadline, psutil.Process(shell).children()
        time.sleep(0.05)
    (sleeper,) = psutil.Process(shell).children()
    pidfd = os.pidfd_open(sleeper.pid)
    if end == "worker-exits-as-ray-does":
        for child in psutil.Process(worker.pid).children():
            child.send_signal(signal.SIGKILL)
    if end == "shell-killed":
        os.kill(shell, signal.SIGKILL)  # the worker lives on; stage() returns
    else:
        worker.kill()
    worker.communicate(timeout=60)
    try:
        assert select.select([pidfd], [], [], 30)[0], "the shell's child outlived its worker"
    finally:
        os.close(pidfd)
        with contextlib.suppress(psutil.NoSuchProcess):
            sleeper.kill()


def test_a_finished_command_leaves_its_background_processes_alone(tmp_path):
    # As under DVC: the watchdog stops the group only when the worker dies, not after a
    # command that ended (here leaving a background process, which keeps running).
    cmd = "echo $$; sleep 120 >/dev/null 2>&1 & echo bg $!"
    worker = subprocess.run(
        [sys.executable, "-c", TASK, cmd], cwd=tmp_path, capture_output=True, text=True,
        env=pipeline_env(PYTHONPATH=str(REPO_ROOT)), timeout=60,
    )  # fmt: skip
    assert worker.returncode == 0, worker.stderr
    background_pid = int(worker.stdout.split("bg ")[1].split()[0])
    time.sleep(1)  # the watchdog would have stopped it by now
    try:
        assert psutil.Process(background_pid).status() != psutil.STATUS_ZOMBIE
    finally:
        psutil.Process(background_pid).kill()
