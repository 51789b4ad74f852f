"""tools/ray_repro.py keeps what finished: a stage that DVC's checks or recording reject fails
alone, as a failed command does, and each finished stage is in dvc.lock at once."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import tempfile

import psutil
from dvc_projects import GRAPH, Lines, project, run_runner, runner, stage, status
from processes import ray_processes

from bench.workspace import pipeline_env


def test_an_error_in_dvcs_checks_or_recording_fails_only_that_stage(tmp_path):
    graph = {
        **GRAPH,
        "quiet": stage("true", ["q.txt"]),  # succeeds, but writes no q.txt: DVC's save fails
        "after": stage("cat q.txt > after.txt", ["after.txt"], ["q.txt"]),
        "orphan": stage("cat gone.txt > o.txt", ["o.txt"], ["gone.txt"]),  # no such dependency
    }
    repo = project(tmp_path, graph)
    code, out, err = run_runner(repo)
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
    proc.kill()
    proc.wait(timeout=60)
    lines.rest()
    assert set(status(repo)) == {"slow"}  # quick is in dvc.lock
    # The command dies with its Ray worker, which dies with the Ray instance the runner started.
    assert select.select([pidfd], [], [], 60)[0], "the stage's command outlived the runner"
    os.close(pidfd)
    _, alive = psutil.wait_procs(ray_processes(marker), timeout=60)
    assert not alive, f"Ray processes left behind: {alive}"
    shutil.rmtree(marker)
