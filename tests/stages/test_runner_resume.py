"""A training killed under `make repro`'s runner resumes under it: the runner gives a stage no
Ray node id (and a training's resume key holds nothing about where it runs), so the next run,
on a new local Ray instance, continues from the backup in the same MLflow run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from pathlib import Path

import mlflow
import psutil
import yaml
from dvc_projects import Lines
from processes import describe, is_fork_server, ray_processes, working_in

from bench.workspace import pipeline_env


def test_a_training_killed_under_the_runner_resumes_under_it(study):
    params = yaml.safe_load((study / "params.yaml").read_text())
    # Stale (the tiny study trains 2 epochs of 2 seeds) and long enough (0.1 s an epoch here)
    # for the kill to land during the training.
    params["variants"]["dropout"].update(epochs=30, seeds=1)
    # The held training ignores the SIGTERM its caller relays: it dies of the SIGKILL after.
    params["runner"]["parallel"]["stop_timeout_s"] = 1
    (study / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    marker = tempfile.mkdtemp(prefix="rk", dir="/tmp")  # Ray's sockets need a short path
    # DVC runs a stage's command with $SHELL (else /bin/sh); dash, Debian's /bin/sh, forks it
    # where bash would exec it: one process more between the Ray worker and the stage.
    env = pipeline_env(DATA_MIRRORS="", RAY_TMPDIR=marker, SHELL="/bin/sh")
    cmd = [sys.executable, "-m", "tools.ray_repro", "train@dropout"]
    first = subprocess.Popen(
        cmd, cwd=study, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines = Lines(first)
    training = forked_training(study)
    # Epoch 3's snapshot on disk: the backup holds epoch 2 by then. (Not the progress line:
    # Ray forwards a worker's output late under load, once after the training had ended.)
    wait_for_snapshot(study / ".backup/dropout/seed42", 3)
    # Held mid-training: the kill reaches it through the Ray worker's death, seconds later
    # under CI's load, in which it once finished its last 27 epochs (and removed its backup).
    training.suspend()
    before = describe([*(p for p in ray_processes(marker) if p != training), training])
    first.kill()  # kill -9 of the runner: its Ray instance, worker and stage die with it
    first.wait(timeout=60)
    lines.rest()
    # The warm fork server outlives the runner by design (runner.idle_timeout_s); the Ray
    # instance, its worker and the training forked from the server do not.
    left = [p for p in ray_processes(marker) if not is_fork_server(p)]
    _, alive = psutil.wait_procs([*left, training], timeout=60)
    assert not alive, f"left behind:\n{describe(alive)}\nbefore the kill:\n{before}"
    (state,) = study.glob(".backup/dropout/seed42/*/training_state.json")
    killed = json.loads(state.read_text())
    killed_run = killed["meta"]["run_id"]

    second = subprocess.run(cmd, cwd=study, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    shutil.rmtree(marker, ignore_errors=True)
    epochs = [line for line in second.stdout.splitlines() if "train dropout: epoch" in line]
    # On from the backup (epoch 2 or a later one the kill let finish), not from epoch 1; no
    # further epoch if the kill came after the last one.
    if epochs:
        first_epoch = int(epochs[0].split("epoch ")[1].split("/")[0])
        assert 3 <= first_epoch <= 30, epochs
    else:
        assert "30" in killed["snapshots"], second.stdout
    summary = json.loads((study / "models/dropout/train.json").read_text())
    assert summary["run_id"] == killed_run and summary["epochs_run"] == 30
    run = mlflow.MlflowClient(f"sqlite:///{study / 'mlflow.db'}").get_run(killed_run)
    assert run.info.status == "FINISHED"
    assert not list(study.glob(".backup/dropout/seed42/*"))  # nothing left to resume


def forked_training(study: Path, timeout: float = 120) -> psutil.Process:
    """The train stage's process, forked by the warm server for a run in `study` (its cwd)
    after the runner's `tools.prefork stages.train` call: earlier forks ran other stages."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with suppress(psutil.NoSuchProcess):
            here = {p: " ".join(p.cmdline()) for p in working_in(study)}
            calls = [p for p, cmdline in here.items() if "stages.train" in cmdline]
            for proc, cmdline in here.items():
                later = calls and proc.create_time() >= calls[0].create_time()
                if "forkserver.py" in cmdline and later and not is_fork_server(proc):
                    return proc
        time.sleep(0.05)
    raise AssertionError(f"no train stage forked for {study} in {timeout} s")


def wait_for_snapshot(work: Path, epoch: int, timeout: float = 120) -> None:
    """Until a training state under `work` (TrainingState's file, written atomically) holds
    the snapshot after `epoch` epochs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for state in work.glob("*/training_state.json"):
            with suppress(FileNotFoundError):
                if str(epoch) in json.loads(state.read_text())["snapshots"]:
                    return
        time.sleep(0.02)
    raise AssertionError(f"no snapshot of epoch {epoch} under {work} in {timeout} s")
