"""stages.resume: a crashed training resumes to exactly the uninterrupted result."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from conftest import tiny_fashion

from stages.params import REPO_ROOT, resolve_variant
from stages.resume import read_state
from stages.train import configure_tf, train_model


class Crash(keras.callbacks.Callback):
    """Raises after `epoch` epochs, after the other callbacks have saved their state."""

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise KeyboardInterrupt("simulated crash")


def run(cfg, out, work, crash_after=None, noisy_val=False):
    configure_tf(seed=11, deterministic=True, threads=1)  # as a fresh process would
    train, val = tiny_fashion()
    if noisy_val:  # labels unrelated to images: val_loss rises as the model gets confident
        val = (val[0], np.random.default_rng(0).permutation(val[1]))
    extra = [Crash(crash_after)] if crash_after else None
    return train_model(cfg, train, val, out, work, {"key": "k"}, extra)


def weights(path):
    return keras.saving.load_model(path).get_weights()


def assert_same_models(a, b):
    for name in ("best.keras", "last.keras"):
        for x, y in zip(weights(a / name), weights(b / name), strict=True):
            np.testing.assert_array_equal(x, y)


def test_resume_after_crash_equals_uninterrupted(params, tmp_path):
    # With noisy validation labels the best val_loss comes early and later epochs are
    # worse: the case where a forgetful checkpoint would overwrite best.keras after resume.
    cfg = {**resolve_variant(params, "dropout"), "epochs": 6, "batch_size": 16, "patience": 6}
    full = run(cfg, tmp_path / "full", tmp_path / "w1", noisy_val=True)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "resumed", tmp_path / "w2", crash_after=3, noisy_val=True)
    assert len(read_state(tmp_path / "w2")["snapshots"]) == 3
    resumed = run(cfg, tmp_path / "resumed", tmp_path / "w2", noisy_val=True)
    assert resumed.history == full.history
    assert (resumed.best_epoch, resumed.epochs_run) == (full.best_epoch, full.epochs_run)
    assert full.best_epoch < 3 < full.epochs_run  # the best came before the crash
    assert_same_models(tmp_path / "full", tmp_path / "resumed")
    assert not (tmp_path / "w2").exists()  # finished: nothing left to resume


KILL_SCRIPT = """
import sys
sys.path[:0] = [{root!r}, {tests!r}]
import json, pathlib
from stages.train import configure_tf, train_model
from conftest import tiny_fashion
cfg = json.loads(sys.argv[1])
configure_tf(seed=11, deterministic=True, threads=1)
train, val = tiny_fashion()
train_model(cfg, train, val, pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3]), {{"key": "k"}})
"""


def test_kill_9_mid_run_then_resume(params, tmp_path):
    import json

    cfg = {**resolve_variant(params, "dropout"), "epochs": 60, "batch_size": 8, "patience": 60}
    script = KILL_SCRIPT.format(root=str(REPO_ROOT), tests=str(REPO_ROOT / "tests"))
    work = tmp_path / "work"
    proc = subprocess.Popen(
        [sys.executable, "-c", script, json.dumps(cfg), str(tmp_path / "killed"), str(work)],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        state = read_state(work) if (work / "training_state.json").exists() else None
        if state and len(state["snapshots"]) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the training process ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(read_state(work)["snapshots"])
    assert 2 <= done < 60, "the process must be killed mid-run"
    resumed = run(cfg, tmp_path / "killed", work)  # the same run, resumed in this process
    full = run(cfg, tmp_path / "full", tmp_path / "w_full")
    assert resumed.history == full.history
    assert_same_models(tmp_path / "full", tmp_path / "killed")


def test_backup_resumes_its_mlflow_run_or_is_discarded_and_killed(tmp_path):
    import json

    import mlflow

    from stages.resume import STATE_FILE
    from stages.train import resume_or_start

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    exp = client.create_experiment("e", artifact_location=(tmp_path / "art").as_uri())
    run_id = client.create_run(exp).info.run_id
    work = tmp_path / "work"
    work.mkdir()
    state = {"meta": {"key": "k1", "run_id": run_id}, "history": {}, "snapshots": {"2": {}}}
    (work / STATE_FILE).write_text(json.dumps(state))
    # same params and data: continue the interrupted run
    assert resume_or_start(mlflow, work, "k1") == run_id
    assert client.get_run(run_id).info.status == "RUNNING"
    # params or data changed since: start over, and the interrupted run ends KILLED
    assert resume_or_start(mlflow, work, "k2") is None
    assert client.get_run(run_id).info.status == "KILLED"
    assert not work.exists()
