"""tools.prefork: a forked stage behaves like `python -m module` run directly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from stages.params import REPO_ROOT, ConfigError
from tools.prefork import runner_settings

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
RUNNER = {"prefork": True, "idle_timeout_s": 60, "start_timeout_s": 60, "preload": ["json"]}


def probe_repo(tmp_path: Path, version: int = 1, **runner) -> Path:
    """A directory with params.yaml (runner section), probe.py and a link to tools/."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"runner": {**RUNNER, **runner}}))
    (tmp_path / "probe.py").write_text(f"VERSION = {version}\n{PROBE}")
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


def _gone(pid: int) -> bool:
    for _ in range(200):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
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
