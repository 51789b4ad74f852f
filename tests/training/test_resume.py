"""stages.resume: a crashed training resumes to exactly the uninterrupted result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from conftest import tiny_fashion

from stages.backups import (
    STATE_FILE,
    backup_dir,
    claimed,
    discard,
    discard_abandoned,
    read_state,
    resume_or_start,
    tidy,
)
from stages.params import REPO_ROOT, StageError, resolve_variant
from stages.tracking import resume_key
from stages.train import configure_tf, train_model


class CrashAtStart(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        raise KeyboardInterrupt("killed before the first epoch ended")


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


@pytest.mark.parametrize("plateau", [None, {"factor": 0.5, "patience": 2}])
def test_resume_after_crash_equals_uninterrupted(params, tmp_path, plateau):
    # With noisy validation labels the best val_loss comes early and later epochs are
    # worse: the case where a forgetful checkpoint would overwrite best.keras after resume,
    # and where ReduceLROnPlateau's counter runs across the crash.
    cfg = {**resolve_variant(params, "dropout"), "epochs": 6, "batch_size": 16, "patience": 6}
    cfg["reduce_lr_on_plateau"] = plateau
    full = run(cfg, tmp_path / "full", tmp_path / "w1", noisy_val=True)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "resumed", tmp_path / "w2", crash_after=3, noisy_val=True)
    assert len(read_state(tmp_path / "w2")["snapshots"]) == 3
    resumed = run(cfg, tmp_path / "resumed", tmp_path / "w2", noisy_val=True)
    assert resumed.history == full.history
    assert (resumed.best_epoch, resumed.epochs_run) == (full.best_epoch, full.epochs_run)
    assert full.best_epoch < 3 < full.epochs_run  # the best came before the crash
    if plateau:  # the rate (an optimizer variable) and the callback's memory both resumed
        rates = full.history["learning_rate"]
        assert rates[0] == pytest.approx(0.001) and len(set(rates)) > 2, rates
    assert_same_models(tmp_path / "full", tmp_path / "resumed")
    assert read_state(tmp_path / "w2")["finished"]  # kept until the caller discards it


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


def store(tmp_path):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    exp = client.create_experiment("e", artifact_location=(tmp_path / "art").as_uri())
    return client, exp


def write_state(work, key, run_id, snapshots=None):
    work.mkdir(parents=True, exist_ok=True)
    meta = {"key": key, "run_id": run_id}
    state = {"meta": meta, "history": {}, "snapshots": snapshots or {"2": {}}}
    (work / STATE_FILE).write_text(json.dumps(state))


def test_backup_resumes_its_mlflow_run_or_is_discarded_and_killed(tmp_path):
    client, exp = store(tmp_path)
    run_id = client.create_run(exp).info.run_id
    work = tmp_path / "work"
    write_state(work, "k1", run_id)
    # same params, data and code: continue the interrupted run
    assert resume_or_start(client, work, "k1") == run_id
    assert client.get_run(run_id).info.status == "RUNNING"
    # params, data or code changed since: start over, and the interrupted run ends KILLED
    assert resume_or_start(client, work, "k2") is None
    assert client.get_run(run_id).info.status == "KILLED"
    assert read_state(work) is None


def test_a_run_of_another_store_or_a_finished_run_is_not_resumed(tmp_path):
    client, exp = store(tmp_path)
    work = tmp_path / "work"
    write_state(work, "k", "0123456789abcdef0123456789abcdef")  # not in this store
    assert resume_or_start(client, work, "k") is None and read_state(work) is None
    run_id = client.create_run(exp).info.run_id
    client.set_terminated(run_id, "FINISHED")
    write_state(work, "k", run_id)
    assert resume_or_start(client, work, "k") is None
    assert client.get_run(run_id).info.status == "FINISHED"


def test_resume_key_covers_the_stage_code(tmp_path, monkeypatch):
    import stages.tracking

    code = tmp_path / "stages" / "train.py"
    code.parent.mkdir()
    code.write_text("a = 1\n")
    monkeypatch.setattr(stages.tracking, "REPO_ROOT", tmp_path)
    tags = {"config_hash": "c", "git_commit": "abc", "git_dirty": "true", "dvc_exp_name": "x"}
    key = resume_key(tags, [code])
    assert resume_key({**tags, "git_commit": "def", "dvc_exp_name": "y"}, [code]) == key
    assert resume_key({**tags, "config_hash": "d"}, [code]) != key
    code.write_text("a = 2\n")
    assert resume_key(tags, [code]) != key


def test_run_id_is_on_disk_before_the_first_epoch(params, tmp_path):
    cfg = {**resolve_variant(params, "baseline"), "epochs": 3, "batch_size": 16}
    configure_tf(seed=11, deterministic=True, threads=1)
    train, val = tiny_fashion()
    with pytest.raises(KeyboardInterrupt):
        meta = {"key": "k", "run_id": "r1"}
        train_model(cfg, train, val, tmp_path / "out", tmp_path / "w", meta, [CrashAtStart()])
    assert read_state(tmp_path / "w")["meta"] == {"key": "k", "run_id": "r1"}


def test_a_finished_training_killed_before_its_outputs_is_not_lost(params, tmp_path):
    cfg = {**resolve_variant(params, "baseline"), "epochs": 2, "batch_size": 16}
    first = run(cfg, tmp_path / "out", tmp_path / "w")
    for name in ("best.keras", "last.keras"):  # DVC deletes outs before it reruns a stage
        (tmp_path / "out" / name).unlink()
    again = run(cfg, tmp_path / "out", tmp_path / "w", crash_after=1)  # no fit: no crash
    assert again.history == first.history and again.train_time_s == first.train_time_s
    assert (tmp_path / "out" / "best.keras").is_file()
    discard(tmp_path / "w")
    assert not (tmp_path / "w").exists()


def test_backup_dir_is_in_the_users_repository(monkeypatch, tmp_path):
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))  # as in `dvc exp run --temp/--queue`
    assert backup_dir("dropout", "k") == tmp_path / ".backup" / "dropout" / "k"


def test_one_owner_per_backup_and_abandoned_ones_end_killed(tmp_path):
    client, exp = store(tmp_path)
    variant_dir = tmp_path / ".backup" / "v"
    mine, dead, live = (variant_dir / k for k in ("k1", "k0", "k2"))
    dead_run, live_run = (client.create_run(exp).info.run_id for _ in range(2))
    write_state(dead, "k0", dead_run)
    write_state(live, "k2", live_run)
    # `live`: a training with other params, still running
    with claimed(live), claimed(mine):
        with pytest.raises(StageError, match="another process is training"), claimed(mine):
            pass
        discard_abandoned(client, mine)
    assert not dead.exists() and client.get_run(dead_run).info.status == "KILLED"
    assert live.exists() and client.get_run(live_run).info.status == "RUNNING"


def test_tidy_ends_backups_of_removed_variants_and_of_results_dvc_restored(tmp_path, monkeypatch):
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    client, exp = store(tmp_path)
    names = ("gone", "cached", "seed", "resume")
    runs = {name: client.create_run(exp).info.run_id for name in names}
    write_state(backup_dir("gone", "k"), "k", runs["gone"])  # variant removed from params
    write_state(backup_dir("v", "k1"), "k1", runs["cached"])  # its result is in models/
    write_state(backup_dir("v", "k0"), "k0", runs["seed"])  # another seed's, in models/
    write_state(backup_dir("v", "k2"), "k2", runs["resume"])  # may still be resumed
    (tmp_path / "models" / "v" / "seeds" / "seed43").mkdir(parents=True)
    (tmp_path / "models" / "v" / "train.json").write_text(json.dumps({"key": "k1"}))
    seed = tmp_path / "models" / "v" / "seeds" / "seed43" / "train.json"
    seed.write_text(json.dumps({"key": "k0"}))
    with claimed(backup_dir("v", "k3")):  # a live training is never touched
        removed = tidy(client, {"v"}, tmp_path / "models")
    assert removed == [backup_dir("gone", "k"), backup_dir("v", "k0"), backup_dir("v", "k1")]
    assert not (tmp_path / ".backup" / "gone").exists()
    assert backup_dir("v", "k2").exists() and backup_dir("v", "k3").exists()
    status = {name: client.get_run(run_id).info.status for name, run_id in runs.items()}
    assert status == {"gone": "KILLED", "cached": "KILLED", "seed": "KILLED", "resume": "RUNNING"}
