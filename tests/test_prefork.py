"""tools.prefork: a forked stage behaves like `python -m module` run directly."""

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
import yaml

from stages.params import REPO_ROOT, ConfigError
from tools.forkserver import HEADER
from tools.prefork import runner_settings, socket_dir, stop_servers

# A stand-in stage: reports what a process sees, then exits as told.
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
if mode == "cleanup":
    import atexit, threading
    atexit.register(lambda: Path("atexit-ran").write_text("yes"))
    threading.Thread(target=lambda: (time.sleep(0.3), Path("thread-ran").write_text("yes"))).start()
    sys.exit("bye")
sys.exit(int(mode))
"""
# A stand-in stage that reports the process attributes a caller can set.
ATTRS = """
import json, os, resource
print(json.dumps([os.umask(0), os.getpriority(os.PRIO_PROCESS, 0), sorted(os.sched_getaffinity(0)),
                  resource.getrlimit(resource.RLIMIT_NOFILE)]))
"""
RUNNER = {"prefork": True, "idle_timeout_s": 60, "start_timeout_s": 60, "preload": ["json"]}


def probe_repo(tmp_path: Path, version: int = 1, **runner) -> Path:
    """A directory with params.yaml (runner section), probe.py and a link to tools/."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"runner": {**RUNNER, **runner}}))
    (tmp_path / "probe.py").write_text(f"VERSION = {version}\n{PROBE}")
    (tmp_path / "attrs.py").write_text(ATTRS)
    for package in ("tools", "stages"):
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


def test_forked_child_gets_the_callers_cwd_argv_env_stdio_and_exit_code(tmp_path):
    repo = probe_repo(tmp_path)
    code, seen, err, client_pid = run(repo, "3", PROBE_VALUE="v2")
    assert code == 3
    assert seen["pid"] != client_pid  # it ran in a fork of the server, not in the caller
    assert seen["cwd"] == str(repo) and seen["argv"][1:] == ["3"]
    assert seen["env"] == "v2" and seen["stdin"] == "hello"
    assert "to stderr" in err


def test_edited_code_takes_effect_on_the_same_warm_server(tmp_path):
    repo = probe_repo(tmp_path)
    first = run(repo, "0")
    servers = server_logs().count(" ready: ")
    probe_repo(tmp_path, version=2)
    second = run(repo, "0")
    assert (first[0], second[0]) == (0, 0)
    assert (first[1]["version"], second[1]["version"]) == (1, 2)
    assert server_logs().count(" ready: ") == servers  # the same server ran both


def test_a_broken_caller_does_not_take_the_server_down(tmp_path):
    repo = probe_repo(tmp_path)
    assert run(repo, "0")[0] == 0
    servers = server_logs().count(" ready: ")
    for sock_path in Path(os.environ["XDG_RUNTIME_DIR"]).glob("keras-pipeline-*/*.sock"):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(str(sock_path))
            conn.sendall(b"not a request")  # no fds, then hang up
    assert run(repo, "0")[0] == 0
    assert server_logs().count(" ready: ") == servers


def test_uncaught_exception_prints_a_traceback_and_exits_1(tmp_path):
    code, _, err, _ = run(probe_repo(tmp_path), "fail")
    assert code == 1 and "RuntimeError: boom" in err


def test_exit_runs_atexit_handlers_and_joins_threads(tmp_path):
    repo = probe_repo(tmp_path)
    code, _, err, _ = run(repo, "cleanup")
    assert code == 1 and "bye" in err  # sys.exit("message"), as Python reports it
    assert (repo / "atexit-ran").read_text() == (repo / "thread-ran").read_text() == "yes"


def test_uncaught_ctrl_c_is_death_by_sigint(tmp_path):
    code, _, err, _ = run(probe_repo(tmp_path), "interrupt")
    assert code == -signal.SIGINT and "KeyboardInterrupt" in err


def _wait_for(path: Path) -> int:
    for _ in range(600):
        if path.exists() and path.read_text():
            return int(path.read_text())
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def _stat(pid: int) -> list[str]:
    """Fields 3... of /proc/PID/stat: [0] the state (Z: zombie), [19] the start time."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except FileNotFoundError:
        return [""]


def _state(pid: int) -> str | None:
    return _stat(pid)[0] or None


def _gone(pid: int) -> bool:
    """Dead, even if only a zombie (an orphan's reaper is whatever PID 1 is)."""
    for _ in range(200):
        if _state(pid) in (None, "Z"):
            return True
        time.sleep(0.05)
    return False


def start_sleeper(repo: Path) -> tuple[subprocess.Popen, int]:
    """A caller whose stage sleeps, and the stage's pid once it runs."""
    proc = start(repo, "sleep")
    proc.stdin.write("x\n")
    proc.stdin.flush()
    return proc, _wait_for(repo / "started")


def test_signals_reach_the_child_and_its_death_is_the_callers(tmp_path):
    proc, child = start_sleeper(probe_repo(tmp_path))
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGTERM
    assert _gone(child)


def test_killing_the_caller_kills_its_stage(tmp_path):
    proc, child = start_sleeper(probe_repo(tmp_path))
    proc.kill()  # SIGKILL: nothing to forward, the server sees the connection drop
    proc.communicate(timeout=30)
    assert _gone(child)


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
    assert server_logs().count(" ready: ") == 1 and _state(server) not in (None, "Z")


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
        assert _gone(child)
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
        assert _gone(child)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 1 and "the server ended before stage process" in err
    finally:
        if _state(child) not in (None, "Z"):
            os.kill(child, signal.SIGKILL)


def test_the_stage_gets_the_callers_umask_nice_affinity_and_limits(tmp_path, own_server):
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
        stale[1].write_text(f"{other.pid} {int(_stat(other.pid)[19]) - 1}")
        stop_servers()
        assert _gone(own_server)  # the real server was stopped
        assert other.poll() is None and not any(p.exists() for p in stale)
    finally:
        other.kill()
        other.wait()


def test_prefork_off_runs_in_the_callers_process(tmp_path):
    code, seen, _, client_pid = run(probe_repo(tmp_path, prefork=False), "0")
    assert code == 0 and seen["pid"] == client_pid


def test_a_server_that_cannot_start_falls_back_to_running_directly(tmp_path):
    repo = probe_repo(tmp_path, preload=["no_such_module_anywhere"])
    code, seen, err, client_pid = run(repo, "0")
    assert code == 0 and seen["pid"] == client_pid
    assert "no warm server" in err


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("prefork", "yes", "runner.prefork: must be true or false"),
        ("idle_timeout_s", 0, "runner.idle_timeout_s: must be a number > 0"),
        ("preload", "tensorflow", "runner.preload: must be a list of module names"),
        ("preload", ["keras", "stages.model"], "stages.model: only third-party modules"),
    ],
)
def test_bad_runner_settings_name_the_key(key, value, message):
    with pytest.raises(ConfigError, match=message):
        runner_settings({"runner": {**RUNNER, key: value}})


def test_missing_runner_section_names_the_key():
    with pytest.raises(ConfigError, match=r"missing key 'runner\.prefork'"):
        runner_settings({})
