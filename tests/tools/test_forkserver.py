"""tools.forkserver: callers cannot break the server or each other; a stage gets the caller's
process attributes and dies with the server; the runtime directory and pid files are checked."""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prefork_probe import gone, probe_repo, proc_stat, proc_state, run, server_logs, start_sleeper

from tools.forkserver import HEADER
from tools.prefork import socket_dir, stop_servers

# A stand-in stage that reports the process attributes a caller can set.
ATTRS = """
import json, os, resource
print(json.dumps([os.umask(0), os.getpriority(os.PRIO_PROCESS, 0), sorted(os.sched_getaffinity(0)),
                  resource.getrlimit(resource.RLIMIT_NOFILE)]))
"""


@pytest.fixture
def own_server(tmp_path, tmp_path_factory, monkeypatch):
    """A throwaway server for this test only (it may be stopped or killed); its pid."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path_factory.mktemp("own")))  # a short path
    assert run(probe_repo(tmp_path), "0")[0] == 0
    yield int(next(socket_dir().glob("*.pid")).read_text().split()[0])
    stop_servers()


def _wait_for_log(text: str) -> None:
    for _ in range(200):
        if text in server_logs():
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in the server log:\n{server_logs()}")


def _still_serves(repo: Path, server: int) -> None:
    assert run(repo, "0")[0] == 0
    assert server_logs().count(" ready: ") == 1 and proc_state(server) not in (None, "Z")


def test_a_caller_gone_before_the_pid_reply_has_its_stage_killed(tmp_path, own_server):
    hang_up = (
        "import socket, sys; from tools.forkserver import send_request\n"
        "conn = socket.socket(socket.AF_UNIX); conn.connect(sys.argv[1])\n"
        "conn.shutdown(socket.SHUT_RD)  # so the server's reply fails, whenever it comes\n"
        "send_request(conn, 'probe', ['sleep']); conn.close()"
    )
    sock_path = str(next(socket_dir().glob("*.sock")))
    subprocess.run([sys.executable, "-c", hang_up, sock_path], cwd=tmp_path, check=True)
    _wait_for_log('{"run": "probe sleep", "exit": -9')
    _still_serves(tmp_path, own_server)


def test_a_child_exit_and_its_callers_hang_up_in_one_select_batch(tmp_path, own_server):
    proc, child = start_sleeper(tmp_path)
    os.kill(own_server, signal.SIGSTOP)  # both events wait for the server's next select
    try:
        os.kill(child, signal.SIGKILL)  # first, so reaping it closes the caller's socket
        assert gone(child)
        proc.kill()
        proc.communicate(timeout=30)
    finally:
        os.kill(own_server, signal.SIGCONT)
    _still_serves(tmp_path, own_server)


def test_a_silent_caller_does_not_delay_others(tmp_path, own_server):
    sock_path = str(next(socket_dir().glob("*.sock")))
    with socket.socket(socket.AF_UNIX) as silent, socket.socket(socket.AF_UNIX) as partial:
        silent.connect(sock_path)
        partial.connect(sock_path)
        partial.sendall(HEADER.pack(100) + b"{")  # and then nothing
        started = time.monotonic()
        _still_serves(tmp_path, own_server)
        assert time.monotonic() - started < 5  # the request timeout is 10 s


def test_stages_die_with_a_killed_server(tmp_path, own_server):
    proc, child = start_sleeper(tmp_path)
    try:
        os.kill(own_server, signal.SIGKILL)
        assert gone(child)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 1 and "the server ended before stage process" in err
    finally:
        if proc_state(child) not in (None, "Z"):
            os.kill(child, signal.SIGKILL)


def test_the_stage_gets_the_callers_umask_nice_affinity_and_limits(tmp_path, own_server):
    (tmp_path / "attrs.py").write_text(ATTRS)
    cpus = sorted(os.sched_getaffinity(0))[-1:]

    def restrict() -> None:  # as `umask 077; ulimit -n 256; nice -n 5 taskset -c N` would
        os.umask(0o077)
        os.nice(5)
        os.sched_setaffinity(0, cpus)
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    def seen(*module: str, preexec_fn=None) -> list:
        env = {**os.environ, "PROBE_VALUE": "v1"}  # as run()'s, so the same server
        cmd = [sys.executable, "-m", *module]
        out = subprocess.run(cmd, cwd=tmp_path, env=env, preexec_fn=preexec_fn, capture_output=True)
        return json.loads(out.stdout)

    nice = min(19, os.getpriority(os.PRIO_PROCESS, 0) + 5)
    assert seen("tools.prefork", "attrs", preexec_fn=restrict) == [0o077, nice, cpus, [256, 256]]
    assert seen("tools.prefork", "attrs") == seen("attrs")  # and back: the server kept its own
    _still_serves(tmp_path, own_server)


@pytest.mark.parametrize("problem", ["symlink", "mode"])
def test_an_unsafe_runtime_directory_is_refused(tmp_path, monkeypatch, problem):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    path = tmp_path / f"keras-pipeline-{os.getuid()}"
    if problem == "symlink":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        path.symlink_to(tmp_path / "elsewhere")
    else:
        path.mkdir()
        path.chmod(0o755)
    with pytest.raises(SystemExit, match=f"^error: {re.escape(str(path))} .*XDG_RUNTIME_DIR"):
        socket_dir()


def test_stop_does_not_signal_a_process_that_reuses_a_stale_pid(tmp_path, own_server):
    other = subprocess.Popen(["sleep", "30"])
    try:
        stale = [socket_dir() / "old-format.pid", socket_dir() / "other-start.pid"]
        stale[0].write_text(str(other.pid))
        stale[1].write_text(f"{other.pid} {int(proc_stat(other.pid)[19]) - 1}")
        stop_servers()
        assert gone(own_server)  # the real server was stopped
        assert other.poll() is None and not any(p.exists() for p in stale)
    finally:
        other.kill()
        other.wait()
