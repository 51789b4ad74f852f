"""study.training.resume (and train_model's use of it): a crashed training resumes to exactly
the uninterrupted result."""

from __future__ import annotations

import json
import shutil
from functools import partial

import keras
import numpy as np
import pytest
from conftest import tiny_fashion

import study.training.train as train_module
from study.training.backups import discard, read_state
from study.training.fitting import configure_tf
from study.training.resume import TimedBackup
from study.training.train import train_model
from training.crashes import CopyAfter, Crash, CrashAtStart


def run(
    cfg, out, work, crash_after=None, noisy_val=False, jit=False, copies=None, backup_s=0, extra=()
):
    """train_model as a fresh process would run it; crashed after `crash_after` epochs, its
    work dir copied after the epochs in `copies` ({epoch: destination}) before; backed up at
    most once every backup_s seconds; `extra` callbacks first."""
    configure_tf(seed=11, deterministic=True, threads=1)  # as a fresh process would
    train, val = tiny_fashion()
    if noisy_val:  # labels unrelated to images: val_loss rises as the model gets confident
        val = (val[0], np.random.default_rng(0).permutation(val[1]))
    extra = list(extra) + ([CopyAfter(work, copies)] if copies else [])
    extra += [Crash(crash_after)] if crash_after else []
    return train_model(
        cfg, train, val, out, work, {"key": "k"}, extra or None, jit_compile=jit, seed=11,
        backup_every_s=backup_s,
    )  # fmt: skip


def weights(path):
    return keras.saving.load_model(path).get_weights()


def assert_same_models(a, b):
    for name in ("best.keras", "last.keras"):
        for x, y in zip(weights(a / name), weights(b / name), strict=True):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("jit", [False, True], ids=["plain", "xla"])  # train.jit_compile
def test_resume_after_crash_equals_uninterrupted(variant, tmp_path, jit):
    # With noisy validation labels the best val_loss comes early and later epochs are
    # worse: the case where a forgetful checkpoint would overwrite best.keras after resume,
    # and where ReduceLROnPlateau's counter runs across the crash. (Without a plateau:
    # tests/training/test_run.py, a training killed and resumed in its MLflow run.)
    # Batches of 20 divide the 200 train and 40 val rows: one XLA compile per step kind (a
    # partial last batch: another; tests/training/test_xla.py's crossval test has one).
    plateau = {"factor": 0.5, "patience": 2}
    cfg = variant("dropout", epochs=6, batch_size=20, patience=6, reduce_lr_on_plateau=plateau)
    full = run(cfg, tmp_path / "full", tmp_path / "w1", noisy_val=True, jit=jit)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "resumed", tmp_path / "w2", crash_after=3, noisy_val=True, jit=jit)
    assert len(read_state(tmp_path / "w2")["snapshots"]) == 3
    resumed = run(cfg, tmp_path / "resumed", tmp_path / "w2", noisy_val=True, jit=jit)
    assert resumed.history == full.history
    assert (resumed.best_epoch, resumed.epochs_run) == (full.best_epoch, full.epochs_run)
    assert full.best_epoch < 3 < full.epochs_run  # the best came before the crash
    # the rate (an optimizer variable) and the callback's memory both resumed
    rates = full.history["learning_rate"]
    assert rates[0] == pytest.approx(0.001) and len(set(rates)) > 2, rates
    assert_same_models(tmp_path / "full", tmp_path / "resumed")
    assert read_state(tmp_path / "w2")["finished"]  # kept until the caller discards it


def test_run_id_is_on_disk_before_the_first_epoch(variant, tmp_path):
    cfg = variant("baseline", epochs=3, batch_size=16)
    configure_tf(seed=11, deterministic=True, threads=1)
    train, val = tiny_fashion()
    meta = {"key": "k", "run_id": "r1"}
    with pytest.raises(KeyboardInterrupt):
        train_model(
            cfg, train, val, tmp_path / "out", tmp_path / "w", meta, [CrashAtStart()], seed=11
        )
    assert read_state(tmp_path / "w")["meta"] == {"key": "k", "run_id": "r1"}


def test_a_finished_training_killed_before_its_outputs_is_not_lost(variant, tmp_path):
    cfg = variant("baseline", epochs=2, batch_size=16)
    first = run(cfg, tmp_path / "out", tmp_path / "w")
    for name in ("best.keras", "last.keras"):  # DVC deletes outs before it reruns a stage
        (tmp_path / "out" / name).unlink()
    again = run(cfg, tmp_path / "out", tmp_path / "w", crash_after=1)  # no fit: no crash
    assert again.history == first.history and again.train_time_s == first.train_time_s
    assert (tmp_path / "out" / "best.keras").is_file()
    discard(tmp_path / "w")
    assert not (tmp_path / "w").exists()


def test_a_backup_torn_or_half_written_by_a_kill_resumes_from_its_last_complete_epoch(
    variant, tmp_path
):
    """BackupAndRestore writes an epoch's weights, then its metadata, both in place (after
    copying the previous pair to .bkp). A kill during the metadata write leaves it torn; one
    between the two writes leaves the next epoch's weights beside this epoch's metadata; one
    during the first epoch's save leaves weights without metadata. Each rerun ends as the
    uninterrupted training (from the .bkp pair, or from scratch), and never fails."""
    cfg = variant("dropout", epochs=5, batch_size=16, patience=5)
    full = run(cfg, tmp_path / "full", tmp_path / "w")
    # Killed after epochs 1, 3 and 4: one training, copied after 1 and 3, crashed after 4.
    copies = {epochs: tmp_path / f"w{epochs}" for epochs in (1, 3)}
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "out", tmp_path / "w4", crash_after=4, copies=copies)
    backup = "backup/training_metadata.json", "backup/latest.weights.h5"
    torn, half, first = (tmp_path / name for name in ("torn", "half", "first"))
    shutil.copytree(tmp_path / "w3", torn)
    (torn / backup[0]).write_text('{"ep')  # killed while writing epoch 3's metadata
    shutil.copytree(tmp_path / "w3", half)  # killed between epoch 4's two writes:
    for name in backup:  # the .bkp pair is epoch 3, as are the metadata, and the weights 4
        shutil.copyfile(half / name, half / f"{name}.bkp")
    shutil.copyfile(tmp_path / "w4" / backup[1], half / backup[1])
    shutil.copytree(tmp_path / "w1", first)
    (first / backup[0]).unlink()  # killed before epoch 1's metadata: weights, no metadata
    for work in (torn, half, first):
        resumed = run(cfg, tmp_path / work.name, work)
        assert resumed.history == full.history, work.name
        assert_same_models(tmp_path / "full", tmp_path / work.name)


@pytest.mark.parametrize("end", ["last_epoch", "early_stop"])
def test_a_training_killed_after_the_epoch_that_ended_it_runs_no_further_epoch(
    variant, tmp_path, end
):
    """A kill after the epoch that ends the training (its last one, or the one where early
    stopping fires) but before its models are saved leaves that epoch's backup: the rerun
    runs no further epoch and ends as the uninterrupted training."""
    patience = 6 if end == "last_epoch" else 1
    cfg = variant("dropout", epochs=6, batch_size=20, patience=patience)
    full = run(cfg, tmp_path / "full", tmp_path / "w1", noisy_val=True)
    if end == "early_stop":  # noisy validation: val_loss soon rises, early stopping fires
        assert full.epochs_run < cfg.epochs
    else:
        assert full.epochs_run == cfg.epochs
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "out", tmp_path / "w2", crash_after=full.epochs_run, noisy_val=True)
    resumed = run(cfg, tmp_path / "out", tmp_path / "w2", noisy_val=True)
    assert resumed.history == full.history
    assert (resumed.best_epoch, resumed.epochs_run) == (full.best_epoch, full.epochs_run)
    assert_same_models(tmp_path / "full", tmp_path / "out")


class EpochClock(keras.callbacks.Callback):
    """A clock for TimedBackup that reads n seconds during epoch n (1-based), 0 before."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def on_epoch_begin(self, epoch, logs=None):
        self.now = float(epoch + 1)


def test_a_resume_from_a_timed_backup_replays_the_epochs_since(variant, tmp_path, monkeypatch):
    """Backups at most once every 2 s, an epoch taking 1 s: after epochs 2 and 4, not 5. A
    crash after epoch 5 resumes from epoch 4's backup, replays epoch 5 and ends as the
    uninterrupted training."""
    clock = EpochClock()
    monkeypatch.setattr(train_module, "TimedBackup", partial(TimedBackup, clock=clock))
    cfg = variant("dropout", epochs=6, batch_size=20, patience=6)
    full = run(cfg, tmp_path / "full", tmp_path / "w1", extra=[clock], backup_s=2)
    copies = {epochs: tmp_path / f"after{epochs}" for epochs in (1, 2, 3)}
    clock.now = 0.0  # as a new process's clock at its start
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "out", tmp_path / "w2", 5, extra=[clock], copies=copies, backup_s=2)
    metadata = "backup/training_metadata.json"
    assert not (tmp_path / "after1" / metadata).exists()  # no backup yet after epoch 1
    backed_up = [
        json.loads((tmp_path / d / metadata).read_text())["epoch"]
        for d in ("after2", "after3", "w2")
    ]
    assert backed_up == [2, 2, 4]
    clock.now = 0.0
    resumed = run(cfg, tmp_path / "out", tmp_path / "w2", extra=[clock], backup_s=2)
    assert resumed.history == full.history
    assert_same_models(tmp_path / "full", tmp_path / "out")
