"""tools/ray_repro.py keeps what finished: after a failure (a command, or DVC's checks or
recording rejecting a stage), as `dvc repro`, no new stage starts, or with --keep-going only
what depends on the failed stage does not; each finished stage is in dvc.lock at once."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import tempfile

import psutil
import pytest
import yaml
from dvc_projects import (
    GRAPH,
    RUNNER,
    Lines,
    local_ray,
    project,
    run_runner,
    runner,
    stage,
    status,
)
from processes import LOOPBACK, listening_ips, ray_processes

from bench.workspace import pipeline_env
from tools.schedule import save_seconds


@pytest.fixture(scope="module")
def ray_address():
    with local_ray(num_cpus=2) as address:  # STOP_GRAPH's two CPUs
        yield address


def test_an_error_in_dvcs_checks_or_recording_fails_only_that_stage(tmp_path, ray_address):
    graph = {
        **GRAPH,
        "quiet": stage("true", ["q.txt"]),  # succeeds, but writes no q.txt: DVC's save fails
        "after": stage("cat q.txt > after.txt", ["after.txt"], ["q.txt"]),
        "orphan": stage("cat gone.txt > o.txt", ["o.txt"], ["gone.txt"]),  # no such dependency
    }
    repo = project(tmp_path, graph)
    code, out, err = run_runner(repo, "--keep-going", ray_address=ray_address)
    assert code == 1, out + err
    assert "ray_repro: quiet: done" in out  # its command ran
    assert "failed: quiet (OutputDoesNotExistError: output 'q.txt' does not exist)" in err
    assert "not run: after" in err and not (repo / "after.txt").exists()
    # DVC's run-cache look-up hashes the dependency (`dvc repro` fails the same way).
    missing = f"No such file or directory: '{repo}/gone.txt'"
    assert f"failed: orphan (FileNotFoundError: [Errno 2] {missing})" in err
    assert "orphan: started" not in out
    # The others finished and are in dvc.lock; dvc agrees that only the failed ones are stale.
    assert set(status(repo)) == {"quiet", "after", "orphan"}
    assert (repo / "d.txt").read_text() == "c\na\n"


# Two CPUs: slow and bad start first (their times from a last run), other waits for a CPU.
# bad fails while slow runs (slow ends 2 s after bad started); after_slow waits for slow.
STOP_GRAPH = {
    "slow": stage(
        "until [ -e bad.started ]; do sleep 0.1; done; sleep 2; echo s > s.txt", ["s.txt"]
    ),
    "bad": stage("touch bad.started; exit 3", ["bad.txt"]),
    "other": stage("echo o > o.txt", ["o.txt"]),
    "after_slow": stage("cat s.txt > a.txt", ["a.txt"], ["s.txt"]),
}


def stop_project(tmp_path, name: str):
    repo = project(tmp_path, STOP_GRAPH, name)
    params = {"runner": {**RUNNER, "parallel": {**RUNNER["parallel"], "num_cpus": 2}}}
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    save_seconds(repo, {"slow": 50.0, "bad": 40.0, "other": 1.0, "after_slow": 1.0})
    return repo


def test_a_failure_stops_the_run_as_dvc_repro_does(tmp_path, ray_address):
    repo = stop_project(tmp_path, "stop")
    code, out, err = run_runner(repo, ray_address=ray_address)
    assert code == 1, out + err
    assert "failed: bad (exit 3;" in err
    assert "not run: after_slow, other" in err, out + err
    assert "other: started" not in out and "after_slow: started" not in out
    # The stage running at the failure finished and is in dvc.lock.
    assert "slow: done" in out and (repo / "s.txt").read_text() == "s\n"
    assert set(status(repo)) == {"bad", "other", "after_slow"}


def test_keep_going_runs_all_but_what_depends_on_the_failure(tmp_path, ray_address):
    repo = stop_project(tmp_path, "keep")
    code, out, err = run_runner(repo, "-k", ray_address=ray_address)
    assert code == 1, out + err
    assert "failed: bad (exit 3;" in err and "not run" not in err
    assert (repo / "o.txt").read_text() == "o\n" and (repo / "a.txt").read_text() == "s\n"
    assert set(status(repo)) == {"bad"}


def test_a_killed_runner_loses_only_the_stages_that_were_running(tmp_path):
    graph = {
        "quick": stage("echo q > q.txt", ["q.txt"]),
        "slow": stage("cat q.txt > s.txt; echo slow pid $$; exec sleep 120", ["s.txt"], ["q.txt"]),
    }
    repo = project(tmp_path, graph)
    marker = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # Ray's sockets need a short path
    env = pipeline_env(RAY_TMPDIR=marker)
    proc = runner(repo, env=env, stderr=subprocess.STDOUT)
    lines = Lines(proc)
    # slow waits for quick, which is in dvc.lock before slow is even checked.
    sleeper = int(lines.wait_for("[slow] slow pid ").split()[-1])
    pidfd = os.pidfd_open(sleeper)
    listening = listening_ips(ray_processes(marker))  # the instance the runner started
    assert listening and listening <= LOOPBACK, listening
    proc.kill()
    proc.wait(timeout=60)
    lines.rest()
    assert set(status(repo)) == {"slow"}  # quick is in dvc.lock
    # The command dies with its Ray worker, which dies with the Ray instance the runner started.
    assert select.select([pidfd], [], [], 60)[0], "the stage's command outlived the runner"
    os.close(pidfd)
    # Ray's agents notice the raylet's death within a second, then try for up to 60 s to
    # tell the dead GCS (measured: "Raylet is dead" 04:08:40.2, exit 04:09:41.2) before exiting.
    _, alive = psutil.wait_procs(ray_processes(marker), timeout=120)
    assert not alive, f"Ray processes left behind: {alive}"
    shutil.rmtree(marker)
