"""train: fit one variant, keep its best checkpoint and last model, autolog to MLflow.

Usage: python -m stages.train VARIANT   (dvc.yaml runs one stage per variant)
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stages.fitting import configure_tf
from stages.formats import load_split, split_path, write_atomic
from stages.params import (
    MODELS_DIR,
    PLOTS_DIR,
    PREPARED_DIR,
    REPO_ROOT,
    StageError,
    load_params,
    require,
    run_stage,
    study_variants,
    variant_arg,
    variant_config,
)

HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy")
BEST, LAST = "best.keras", "last.keras"
# The code a training's weights depend on: a backup made by other code is not resumed.
CODE_FILES = [
    REPO_ROOT / "stages" / f"{name}.py"
    for name in ("train", "fitting", "model", "resume", "params")
]


@dataclass
class TrainResult:
    history: dict[str, list[float]]
    best_epoch: int  # 1-based epoch with the lowest val_loss (what best.keras holds)
    epochs_run: int
    train_time_s: float


def train_model(
    cfg: dict[str, Any],
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    out_dir: Path,
    work_dir: Path,
    meta: dict[str, Any] | None = None,
    extra_callbacks: list[Any] | None = None,
) -> TrainResult:
    """Fit the variant; write out_dir/best.keras (lowest val_loss) and out_dir/last.keras.

    work_dir holds the best checkpoint, the backup and both finished models (DVC deletes
    outs before a stage reruns, so they live outside out_dir): a rerun after a kill resumes
    from the last completed epoch, or takes the finished models. The caller removes
    work_dir (backups.discard) once everything derived from the training is written.
    """
    import keras

    from stages.backups import read_state
    from stages.fitting import fit
    from stages.model import build_model
    from stages.resume import TrainingState

    saved = read_state(work_dir) or {}
    finished = saved.get("finished")
    if finished is not None:  # killed after training, before its results were written
        history, seconds = saved["history"], finished["train_time_s"]
    else:
        model = build_model(cfg, train[0].shape[1:])
        work_dir.mkdir(parents=True, exist_ok=True)
        early = keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg["patience"])
        checkpoint = keras.callbacks.ModelCheckpoint(
            work_dir / BEST, monitor="val_loss", save_best_only=True
        )
        plateau = cfg["reduce_lr_on_plateau"]
        if plateau is not None:
            plateau = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", **plateau)
        state = TrainingState(work_dir, checkpoint, early, meta or {}, plateau)
        if not saved:
            state.save()  # the run id is on disk before the first epoch can be killed
        # double_checkpoint: a kill during the backup write falls back to the previous epoch
        backup = keras.callbacks.BackupAndRestore(work_dir / "backup", double_checkpoint=True)
        # TerminateOnNaN: a diverged run stops; best.keras keeps the last finite val_loss.
        stop_nan = keras.callbacks.TerminateOnNaN()
        # plateau before state: its logs' learning_rate joins the history, its memory the
        # snapshot (None when the variant has none).
        rate = [plateau] if plateau is not None else []
        callbacks = [early, checkpoint, *rate, state, backup, stop_nan, *(extra_callbacks or [])]
        start = time.perf_counter()
        fit(model, cfg, train, val, callbacks)
        seconds = time.perf_counter() - start
        history = state.history  # all epochs, also those before a resume
        best_epoch(history["val_loss"])  # fails clearly if no epoch had a finite val_loss
        model.save(work_dir / LAST)
        state.save(finished={"train_time_s": seconds})
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in (BEST, LAST):  # copies: work_dir keeps them until the caller discards it
        tmp = out_dir / f"{name}.tmp"
        shutil.copyfile(work_dir / name, tmp)
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


def flat_config(cfg: dict[str, Any], prefix: str = "variant") -> dict[str, str]:
    """Flatten a nested config into MLflow params: variant.optimizer.beta_1 = ..."""
    flat: dict[str, str] = {}
    for key, value in cfg.items():
        if isinstance(value, dict):
            flat.update(flat_config(value, f"{prefix}.{key}"))
        else:
            flat[f"{prefix}.{key}"] = str(value)
    return flat


def train_run(
    params: dict[str, Any],
    variant: str,
    cfg: dict[str, Any],
    seed: int,
    out_dir: Path,
    history_path: Path,
    run_name: str,
) -> dict[str, Any]:
    """Train the variant with `seed` as its MLflow run `run_name`: out_dir gets best.keras,
    last.keras and train.json (written last: "finished"), history_path the per-epoch CSV.

    train@V trains `seed` into models/<V>/; seeds@V the variant's other seeds."""
    from stages.tracking import project_run_id, resume_key, run_tags, setup_mlflow

    mlflow = setup_mlflow(params)  # fails fast, before loading data or TensorFlow
    from stages.backups import (
        backup_dir,
        claimed,
        discard,
        discard_abandoned,
        resume_or_start,
        tidy,
    )
    from stages.mlflow_keras import RunLogger, log_checkpoints
    from stages.progress import EpochProgress

    parent = project_run_id()
    prepared = REPO_ROOT / PREPARED_DIR
    split_files = [split_path(prepared, s, cfg["dataset"]) for s in ("train", "val")]
    train, val = (load_split(path) for path in split_files)
    configure_tf(seed, require(params, "deterministic"), require(params, "train.threads"))

    tags = run_tags(variant, cfg, params, split_files, seed)
    key = resume_key(tags, CODE_FILES)
    work_dir = backup_dir(variant, key)  # the seed is in the key: one directory per seed
    client = mlflow.MlflowClient()
    with claimed(work_dir):
        discard_abandoned(client, work_dir)
        # Other variants' dead backups (the searched variant is one of the study's).
        tidy(client, set(study_variants(params)), REPO_ROOT / MODELS_DIR)
        run_id = resume_or_start(client, work_dir, key)
        name, parent_id = (None, None) if run_id else (run_name, parent)
        with mlflow.start_run(run_id=run_id, run_name=name, parent_run_id=parent_id) as run:
            mlflow.set_tags(tags)
            if run_id is None:
                mlflow.log_params(flat_config(cfg))
            meta = {"key": key, "run_id": run.info.run_id}
            logging = [RunLogger(), EpochProgress(cfg["epochs"], label=f"train {run_name}")]
            result = train_model(cfg, train, val, out_dir, work_dir, meta, logging)
            models = {name: out_dir / f"{name}.keras" for name in ("best", "last")}
            summary = {
                "dataset": cfg["dataset"],
                "loss": cfg["loss"],
                "depth": cfg["depth"],
                "activation": cfg["activation"],
                "seed": seed,
                "run_id": run.info.run_id,
                "key": key,  # what the result depends on; see stages/backups.py
                "model_ids": log_checkpoints(models, train[0], {"variant": variant}),
                "best_epoch": result.best_epoch,
                "epochs_run": result.epochs_run,
                "train_time_s": round(result.train_time_s, 3),
            }
            metric_keys = ("best_epoch", "epochs_run", "train_time_s")
            mlflow.log_metrics({k: summary[k] for k in metric_keys})
            from stages.figures import learning_curves

            curves = learning_curves(result.history, result.best_epoch, run_name)
            mlflow.log_figure(curves, "plots/learning_curves.png")
            write_atomic(history_path, history_csv(result.history).encode())
            # train.json last: evaluate and compare treat it as "this variant finished"
            summary_json = json.dumps(summary, indent=2) + "\n"
            write_atomic(out_dir / "train.json", summary_json.encode())
            discard(work_dir)  # everything is written: nothing left to resume
    return summary


def main() -> None:
    variant = variant_arg(__doc__)
    params = load_params()
    cfg = variant_config(params, variant)
    out_dir = REPO_ROOT / MODELS_DIR / variant
    history = REPO_ROOT / PLOTS_DIR / "history" / f"{variant}.csv"
    summary = train_run(params, variant, cfg, require(params, "seed"), out_dir, history, variant)
    print(f"train {variant}: {json.dumps(summary)}")


if __name__ == "__main__":
    run_stage(main)
