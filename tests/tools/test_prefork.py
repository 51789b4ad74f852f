"""tools.prefork: a forked stage behaves like `python -m module` run directly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from prefork_probe import RUNNER, gone, probe_repo, run, server_logs, start_sleeper

from study.config.errors import ConfigError
from tools.prefork import runner_settings, server_key


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


def test_a_stage_killed_by_sigkill_is_the_callers_death_by_sigkill(tmp_path):
    repo = probe_repo(tmp_path)
    code, seen, err, client_pid = run(repo, "kill")
    assert seen["pid"] != client_pid  # the forked stage died, and so did its caller:
    assert code == -signal.SIGKILL, err
    assert "Error" not in err  # no handler to install for SIGKILL
    # What a shell sees, as of a stage process killed by SIGKILL: 128 + 9.
    shell = subprocess.run(
        ["sh", "-c", f"{sys.executable} -m tools.prefork probe kill; echo status $?"],
        cwd=repo, input="x\n", capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert shell.stdout.splitlines()[-1] == "status 137", shell.stdout + shell.stderr


def test_signals_reach_the_child_and_its_death_is_the_callers(tmp_path):
    proc, child = start_sleeper(probe_repo(tmp_path))
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGTERM
    assert gone(child)


def test_killing_the_caller_kills_its_stage(tmp_path):
    proc, child = start_sleeper(probe_repo(tmp_path))
    proc.kill()  # SIGKILL: nothing to forward, the server sees the connection drop
    proc.communicate(timeout=30)
    assert gone(child)


def test_prefork_off_runs_in_the_callers_process(tmp_path):
    code, seen, _, client_pid = run(probe_repo(tmp_path, prefork=False), "0")
    assert code == 0 and seen["pid"] == client_pid


def test_preload_can_call_a_function_to_warm_the_server(tmp_path):
    # `module:function` is called once in the server; a stage then runs as a fork of it.
    repo = probe_repo(tmp_path, preload=["json", "gc:collect"])
    code, seen, err, client_pid = run(repo, "0")
    assert code == 0 and seen["pid"] != client_pid and "no warm server" not in err


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


def test_what_callers_parents_add_at_run_time_shares_a_server_an_import_setting_does_not(
    monkeypatch,
):
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    alone = server_key(RUNNER["preload"])
    # As `dvc repro` in a venv's shell, under DVC's queue worker and under a Ray worker
    # (tests/docs/test_docs.py, test_runner_resume.py: each started a server of its own).
    added = {
        "VIRTUAL_ENV": "/x/.venv",
        "VIRTUAL_ENV_PROMPT": ".venv",
        "PS1": "(.venv) $ ",
        "SHELL": "/bin/sh",
        "CELERY_LOG_LEVEL": "20",
        "_MP_FORK_LOGLEVEL_": "20",
        "PYTHONBREAKPOINT": "ray.util.rpdb._driver_set_trace",
        "TUNE_DISABLE_SIGINT_HANDLER": "1",
        "MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS": "1",
    }
    for name, value in added.items():
        monkeypatch.setenv(name, value)
    assert server_key(RUNNER["preload"]) == alone
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")  # read as TensorFlow loads
    assert server_key(RUNNER["preload"]) != alone
