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

from stages.formats import load_split, split_path, write_atomic
from stages.params import (
    BACKUP_DIR,
    MODELS_DIR,
    PLOTS_DIR,
    PREPARED_DIR,
    REPO_ROOT,
    load_params,
    require,
    resolve_all_variants,
    resolve_variant,
    run_stage,
    variant_arg,
)

HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy")


@dataclass
class TrainResult:
    history: dict[str, list[float]]
    best_epoch: int  # 1-based epoch with the lowest val_loss (what best.keras holds)
    epochs_run: int
    train_time_s: float


def configure_tf(seed: int, deterministic: bool, threads: int) -> None:
    """Seed every RNG; optionally make TF ops deterministic; pin the thread pools."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    if threads:
        # Measured: one thread is as fast as two for these small models (less contention).
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


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

    work_dir holds the best checkpoint and the backup while training (DVC deletes outs
    before a stage reruns, so they live outside out_dir); a rerun after a crash resumes
    from the last completed epoch. It is removed once both models are written.
    """
    import keras

    from stages.model import build_model, encode_labels
    from stages.resume import TrainingState

    model = build_model(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    early = keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg["patience"])
    checkpoint = keras.callbacks.ModelCheckpoint(
        work_dir / "best.keras", monitor="val_loss", save_best_only=True
    )
    state = TrainingState(work_dir, checkpoint, early, meta or {})
    # double_checkpoint: a kill during the backup write falls back to the previous epoch
    backup = keras.callbacks.BackupAndRestore(work_dir / "backup", double_checkpoint=True)
    callbacks = [early, checkpoint, state, backup, *(extra_callbacks or [])]
    start = time.perf_counter()
    model.fit(
        train[0],
        encode_labels(train[1], cfg),
        validation_data=(val[0], encode_labels(val[1], cfg)),
        epochs=cfg["epochs"],
        batch_size=cfg["batch_size"],
        callbacks=callbacks,
        verbose=0,
    )
    seconds = time.perf_counter() - start
    model.save(out_dir / "last.keras")
    shutil.move(work_dir / "best.keras", out_dir / "best.keras")
    shutil.rmtree(work_dir)
    history = state.history  # all epochs, also those before a resume
    return TrainResult(
        history=history,
        best_epoch=int(np.argmin(history["val_loss"])) + 1,
        epochs_run=len(history["val_loss"]),
        train_time_s=seconds,
    )


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


def resume_or_start(mlflow: Any, work_dir: Path, key: str) -> str | None:
    """The MLflow run id to resume when work_dir holds a backup made with the same key.

    A stale backup (other params or data) is discarded and its run marked KILLED, so a
    variant never leaves a dangling RUNNING run nor two FINISHED ones.
    """
    from stages.resume import read_state

    saved = read_state(work_dir)
    meta = (saved or {}).get("meta", {})
    if saved and meta.get("key") == key and saved.get("snapshots"):
        return meta["run_id"]
    if meta.get("run_id"):
        mlflow.MlflowClient().set_terminated(meta["run_id"], status="KILLED")
    shutil.rmtree(work_dir, ignore_errors=True)
    return None


def main() -> None:
    variant = variant_arg(__doc__)

    params = load_params()
    cfgs = resolve_all_variants(params)  # all of them: a typo anywhere fails before training
    cfg = cfgs[variant] if variant in cfgs else resolve_variant(params, variant)
    from stages.tracking import config_hash, run_tags, setup_mlflow

    mlflow = setup_mlflow(params)  # fails fast, before loading data or TensorFlow
    prepared = REPO_ROOT / PREPARED_DIR
    split_files = [split_path(prepared, s, cfg["dataset"]) for s in ("train", "val")]
    train, val = (load_split(path) for path in split_files)
    seed, deterministic = require(params, "seed"), require(params, "deterministic")
    configure_tf(seed, deterministic, require(params, "train.threads"))
    mlflow.keras.autolog(log_models=False, log_datasets=False, silent=True)

    out_dir, work_dir = REPO_ROOT / MODELS_DIR / variant, REPO_ROOT / BACKUP_DIR / variant
    tags = run_tags(variant, cfg, params, split_files)
    key = config_hash({k: v for k, v in tags.items() if k != "git_commit"})
    run_id = resume_or_start(mlflow, work_dir, key)
    with mlflow.start_run(run_id=run_id, run_name=None if run_id else variant) as run:
        mlflow.set_tags(tags)
        if run_id is None:
            mlflow.log_params(flat_config(cfg))
        meta = {"key": key, "run_id": run.info.run_id}
        result = train_model(cfg, train, val, out_dir, work_dir, meta)
        summary = {
            "dataset": cfg["dataset"],
            "loss": cfg["loss"],
            "run_id": run.info.run_id,
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
            "train_time_s": round(result.train_time_s, 3),
        }
        mlflow.log_metrics({k: summary[k] for k in ("best_epoch", "epochs_run", "train_time_s")})
        for name in ("best.keras", "last.keras"):
            mlflow.log_artifact(str(out_dir / name), "models")
        from stages.figures import learning_curves

        curves = learning_curves(result.history, result.best_epoch, variant)
        mlflow.log_figure(curves, "plots/learning_curves.png")
        history_path = REPO_ROOT / PLOTS_DIR / "history" / f"{variant}.csv"
        write_atomic(history_path, history_csv(result.history).encode())
        # train.json last: evaluate and compare treat it as "this variant finished training"
        write_atomic(out_dir / "train.json", (json.dumps(summary, indent=2) + "\n").encode())
    print(f"train {variant}: {json.dumps(summary)}")


if __name__ == "__main__":
    run_stage(main)
