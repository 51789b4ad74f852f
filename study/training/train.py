"""Fit one variant: its best checkpoint (lowest val_loss) and last model, resumable after a
kill (the train stage and the search's trials run it; no MLflow here: study/training/run.py)."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from study.config.errors import StageError
from study.config.variant import Variant
from study.io.splits import RawInput
from study.training.backups import read_state
from study.training.fitting import fit
from study.training.model import build_model, raw_input_model
from study.training.resume import TimedBackup, TrainingState, resume_end, settle_backup

HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy")
BEST, LAST = "best.keras", "last.keras"


@dataclass
class TrainResult:
    history: dict[str, list[float]]
    best_epoch: int  # 1-based epoch with the lowest val_loss (what best.keras holds)
    epochs_run: int
    train_time_s: float


def train_model(
    cfg: Variant,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    out_dir: Path,
    work_dir: Path,
    meta: dict[str, Any] | None = None,
    extra_callbacks: list[Any] | None = None,
    raw_input: RawInput | None = None,
    jit_compile: bool = False,
    *,
    seed: int,
    backup_every_s: float = 0.0,
) -> TrainResult:
    """Fit the variant; write out_dir/best.keras (lowest val_loss) and out_dir/last.keras,
    taking raw examples through raw_input's preprocessing when given (raw_input_model: the
    training itself fits on the preprocessed arrays, so the weights do not depend on it);
    its steps XLA-compiled if jit_compile (build_model), its batches in an order of (seed,
    epoch) (fitting.fit), backed up at most once every backup_every_s seconds
    (resume.TimedBackup; 0: every epoch, as Keras's BackupAndRestore).

    work_dir holds the best checkpoint, the backup and both finished models (DVC deletes
    outs before a stage reruns, so they live outside out_dir): a rerun after a kill resumes
    from the last completed epoch, or takes the finished models. The caller removes
    work_dir (backups.discard) once everything derived from the training is written.
    """
    saved = read_state(work_dir) or {}
    finished = saved.get("finished")
    if finished is not None:  # killed after training, before its results were written
        history, seconds = saved["history"], finished["train_time_s"]
    else:
        model = build_model(cfg, train[0].shape[1:], jit_compile)
        work_dir.mkdir(parents=True, exist_ok=True)
        early = keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience)
        checkpoint = keras.callbacks.ModelCheckpoint(
            work_dir / BEST, monitor="val_loss", save_best_only=True
        )
        plateau = None
        if cfg.reduce_lr_on_plateau is not None:
            plateau = keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", **cfg.reduce_lr_on_plateau.model_dump(exclude_unset=True)
            )
        state = TrainingState(work_dir, checkpoint, early, meta or {}, plateau)
        if not saved:
            state.save()  # the run id is on disk before the first epoch can be killed
        # double_checkpoint: a kill during the backup write falls back to the previous backup
        backup = TimedBackup(work_dir / "backup", backup_every_s)
        # a kill mid-write: the last good epoch
        snapshots = saved.get("snapshots", {})
        first_epoch = settle_backup(backup, set(snapshots))
        # TerminateOnNaN: a diverged run stops; best.keras keeps the last finite val_loss.
        stop_nan = keras.callbacks.TerminateOnNaN()
        # plateau before state: its logs' learning_rate joins the history, its memory the
        # snapshot (None when the variant has none).
        rate = [plateau] if plateau is not None else []
        callbacks = [early, checkpoint, *rate, state, backup, stop_nan, *(extra_callbacks or [])]
        start = time.perf_counter()
        end = resume_end(snapshots, first_epoch, cfg.epochs)
        fit(model, cfg, train, val, callbacks, seed=seed, initial_epoch=first_epoch, end=end)
        seconds = time.perf_counter() - start
        history = state.history  # all epochs, also those before a resume
        best_epoch(history["val_loss"])  # fails clearly if no epoch had a finite val_loss
        model.save(work_dir / LAST)
        state.save(finished={"train_time_s": seconds})
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in (BEST, LAST):  # copies: work_dir keeps them until the caller discards it
        tmp = out_dir / f"tmp_{name}"  # Keras saves only to a name ending in .keras
        if raw_input is None:
            shutil.copyfile(work_dir / name, tmp)
        else:
            trained = keras.saving.load_model(work_dir / name, safe_mode=True)
            raw_input_model(trained, raw_input).save(tmp)
        tmp.replace(out_dir / name)
    return TrainResult(
        history=history,
        best_epoch=best_epoch(history["val_loss"]),
        epochs_run=len(history["val_loss"]),
        train_time_s=seconds,
    )


def best_epoch(val_loss: list[float]) -> int:
    """1-based epoch with the lowest finite val_loss: the one ModelCheckpoint kept.

    numpy's argmin would pick a NaN epoch; ModelCheckpoint never saves NaN or inf."""
    losses = np.asarray(val_loss, dtype=float)
    finite = np.isfinite(losses)
    if not finite.any():
        raise StageError(
            f"val_loss was never finite ({val_loss[:3]}...): the training diverged from the"
            " first epoch; lower the learning rate"
        )
    return int(np.argmin(np.where(finite, losses, np.inf))) + 1


def history_csv(history: dict[str, list[float]]) -> str:
    """Per-epoch history as CSV for DVC plots (epoch is 1-based)."""
    lines = [",".join(HISTORY_COLUMNS)]
    for i in range(len(history["loss"])):
        row = [str(i + 1)] + [repr(history[c][i]) for c in HISTORY_COLUMNS[1:]]
        lines.append(",".join(row))
    return "\n".join(lines) + "\n"
