"""Exact resume after a crash: what Keras BackupAndRestore does not restore.

BackupAndRestore restores weights, optimizer state and the epoch. A resumed run must also
continue with the callbacks' memory and the RNG state, or it ends with other numbers:
- ModelCheckpoint(save_best_only) forgets the best val_loss seen and may overwrite the best
  model with a worse one (tf-keras issue 430);
- EarlyStopping and ReduceLROnPlateau forget their patience counters and best values
  (the learning rate itself is an optimizer variable, which the backup holds);
- Dropout's SeedGenerator restarts its stream, so masks differ from an uninterrupted run;
- History only holds the epochs after the restart.
TrainingState snapshots all of these after every epoch, keyed by epoch, and restores the
snapshot matching the epoch BackupAndRestore resumes from.

A kill can land in the middle of a file write. Keras writes checkpoints in place, so
the best model is also copied atomically (best.safe.keras) once ModelCheckpoint has written
it, and restored from that copy; BackupAndRestore runs with double_checkpoint=True, and
settle_backup picks its last complete pair before each fit. Backups are taken at most once every
train.backup_every_s seconds (TimedBackup): the snapshots, kept every epoch, let a resume from the
last one replay the epochs since.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import keras

from study.io.files import write_atomic
from study.training.backups import STATE_FILE, read_state

SAFE_BEST = "best.safe.keras"


def _seed_generators(model: keras.Model) -> list[Any]:
    # Dropout layers own a SeedGenerator whose state advances with every batch.
    return [
        layer.seed_generator
        for layer in model._flatten_layers()
        if getattr(layer, "seed_generator", None) is not None
    ]


class TrainingState(keras.callbacks.Callback):
    """Per-epoch snapshots of checkpoint/early-stopping/plateau memory, RNG state, history.

    Put it after ModelCheckpoint, EarlyStopping and ReduceLROnPlateau (so it records their
    updated values)
    and before BackupAndRestore (so every backed-up epoch has a snapshot).
    """

    def __init__(
        self,
        work_dir: Path,
        checkpoint: keras.callbacks.ModelCheckpoint,
        early_stopping: keras.callbacks.EarlyStopping,
        meta: dict[str, Any],
        plateau: keras.callbacks.ReduceLROnPlateau | None = None,
    ) -> None:
        super().__init__()
        self.work_dir = work_dir
        self.checkpoint = checkpoint
        self.early_stopping = early_stopping
        self.plateau = plateau
        self.meta = meta  # e.g. the MLflow run id and the config hash, kept with the state
        self.history: dict[str, list[float]] = {}
        self.snapshots: dict[str, Any] = {}
        self.resumed_from = 0
        self._restored = False

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        # BackupAndRestore.on_train_begin has set the initial epoch by now, and the other
        # callbacks' on_train_begin (which resets their memory) has run.
        if not self._restored:
            self._restore(epoch)

    def on_train_end(self, logs: dict | None = None) -> None:
        # No epoch ran: the backed-up epoch had ended the training (resume_end), and the fit
        # ran to it; the history and best model still come from its snapshot.
        if not self._restored:
            self._restore(self.params["epochs"])

    def _restore(self, epoch: int) -> None:
        self._restored = True
        saved = read_state(self.work_dir)
        snap = (saved or {}).get("snapshots", {}).get(str(epoch))
        if epoch == 0 or snap is None:
            return
        self.resumed_from = epoch
        self.snapshots = {k: v for k, v in saved["snapshots"].items() if int(k) <= epoch}
        self.history = {k: v[:epoch] for k, v in saved["history"].items()}
        self.checkpoint.best = snap["checkpoint_best"]
        es = self.early_stopping
        es.wait, es.best, es.best_epoch = snap["es_wait"], snap["es_best"], snap["es_best_epoch"]
        if self.plateau is not None:
            p = self.plateau
            p.wait, p.best, p.cooldown_counter = snap["plateau"]
        for gen, state in zip(_seed_generators(self.model), snap["seeds"], strict=True):
            gen.state.assign(state)
        if (self.work_dir / SAFE_BEST).is_file():
            shutil.copyfile(self.work_dir / SAFE_BEST, self.checkpoint.filepath)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        previous = self.snapshots.get(str(epoch), {}).get("checkpoint_best")
        if self.checkpoint.best is not None and _float(self.checkpoint.best) != previous:
            _copy_atomic(Path(self.checkpoint.filepath), self.work_dir / SAFE_BEST)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        es = self.early_stopping
        self.snapshots[str(epoch + 1)] = {
            "checkpoint_best": _float(self.checkpoint.best),
            "es_wait": es.wait,
            "es_best": _float(es.best),
            "es_best_epoch": es.best_epoch,
            "seeds": [g.state.numpy().tolist() for g in _seed_generators(self.model)],
            # early stopping or TerminateOnNaN ended the training here (resume_end)
            "stopped": bool(self.model.stop_training),
        }
        if self.plateau is not None:
            p = self.plateau
            self.snapshots[str(epoch + 1)]["plateau"] = [p.wait, _float(p.best), p.cooldown_counter]
        self.save()

    def save(self, finished: dict[str, Any] | None = None) -> None:
        """Write meta, history and snapshots atomically (a kill leaves the previous file).

        `finished` (e.g. the training time) marks a training whose best and last models
        are both in work_dir: a rerun after a kill takes them instead of training again."""
        doc = {"meta": self.meta, "history": self.history, "snapshots": self.snapshots}
        if finished is not None:
            doc["finished"] = finished
        write_atomic(self.work_dir / STATE_FILE, json.dumps(doc).encode())


class TimedBackup(keras.callbacks.BackupAndRestore):
    """Keras's BackupAndRestore (double_checkpoint), backing up at the end of an epoch only
    once `every_s` seconds have passed since its last backup or the fit's start; every
    epoch with 0, as Keras's. A backup (weights and optimizer state to HDF5, after copying
    the previous pair) costs ~15 ms: a thoracic training's 30 epochs took as long again in
    backups. TrainingState snapshots every epoch, so a resume from an older backup replays
    the epochs since exactly (tests/training/test_resume.py)."""

    def __init__(
        self, backup_dir: Path, every_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(backup_dir, double_checkpoint=True)
        self.every_s, self.clock = every_s, clock
        self.last_s = 0.0

    def on_train_begin(self, logs: dict | None = None) -> None:
        super().on_train_begin(logs)
        self.last_s = self.clock()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.clock() - self.last_s >= self.every_s:
            super().on_epoch_end(epoch, logs)
            self.last_s = self.clock()


def settle_backup(backup: keras.callbacks.BackupAndRestore, snapshots: set[str]) -> int:
    """Leave the backup as one complete (weights, metadata) pair, or none (the seed restarts);
    return the epoch Keras will resume from (0: from the start).

    BackupAndRestore (Keras 3.15: backup_and_restore.py) saves an epoch in place, in this
    order: copy weights to .bkp, copy metadata to .bkp, write weights, write metadata. On
    restore it falls back to the .bkp pair only on an OSError, which a torn metadata file
    (JSONDecodeError) is not, and it loads weights ahead of their metadata when a kill came
    between the two writes. From that order: once both copies are done the .bkp pair is
    complete, and until the metadata is written anew the two metadata files are equal (or it
    is torn). So the current pair is complete when its metadata parses, its weights exist and
    its epoch differs from the .bkp one; else the .bkp pair is (copied over the current one,
    atomically: a kill while settling settles the same way next time); else, or when
    TrainingState has no snapshot of that epoch (`snapshots`), nothing is."""
    weights, meta = Path(backup._weights_path), Path(backup._training_metadata_path)
    prev_weights = Path(backup._prev_weights_path)
    prev_meta = Path(backup._prev_training_metadata_path)
    epoch, prev_epoch = _backup_epoch(meta), _backup_epoch(prev_meta)
    if epoch is None or epoch == prev_epoch or not weights.is_file():
        epoch = prev_epoch if prev_weights.is_file() else None
        if epoch is not None:
            _copy_atomic(prev_weights, weights)
            _copy_atomic(prev_meta, meta)
    if epoch is None or str(epoch) not in snapshots:
        shutil.rmtree(backup.backup_dir, ignore_errors=True)
        return 0
    return epoch


def resume_end(snapshots: dict[str, Any], epoch: int, epochs: int) -> int:
    """The epoch a fit resumed at `epoch` runs to: `epochs`, or `epoch` itself (no epoch
    runs) when that epoch ended the training: it was the last, or its snapshot says early
    stopping or TerminateOnNaN stopped there (a kill came before the models were saved)."""
    if epoch >= epochs or (epoch and snapshots[str(epoch)].get("stopped")):
        return epoch
    return epochs


def _backup_epoch(path: Path) -> int | None:
    """The epoch in BackupAndRestore's metadata file; None if absent or torn."""
    with suppress(FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        epoch = json.loads(path.read_text()).get("epoch")
        return epoch if isinstance(epoch, int) else None
    return None


def _copy_atomic(src: Path, dest: Path) -> None:
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.copyfile(src, tmp)
    tmp.replace(dest)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
