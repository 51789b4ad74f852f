"""A variant's trainings as MLflow runs: one per seed (the variant's `seeds`), each resumable
after a kill, with its models, summary and learning curves (the train stage's work)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from study.config.variant import Variant
from study.io.files import write_atomic
from study.io.splits import load_raw_input, load_raw_x
from study.tracking.keras_log import RunLogger, log_checkpoints, log_missing_epochs
from study.tracking.lineage import split_inputs
from study.tracking.tags import flat_config, project_run_id, run_tags
from study.training.backups import (
    backup_dir,
    claimed,
    discard,
    discard_abandoned,
    resume_key,
    resume_or_start,
)
from study.training.curves import learning_curves
from study.training.fitting import configure_tf
from study.training.progress import EpochProgress
from study.training.train import history_csv, train_model

Split = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Training:
    """One training of a variant: its config, seed and where its results go."""

    variant: str
    run_name: str  # "<variant>" for the first seed, "<variant>/seed<S>" for the others
    cfg: Variant
    seed: int
    deterministic: bool
    split_files: tuple[Path, Path]  # train, val
    out_dir: Path
    history_path: Path
    jit_compile: bool = False  # train.jit_compile: XLA-compiled steps


def seed_trainings(
    variant: str,
    cfg: Variant,
    first_seed: int,
    deterministic: bool,
    split_files: tuple[Path, Path],
    out_dir: Path,
    history_path: Path,
    jit_compile: bool = False,
) -> list[Training]:
    """The variant's trainings, with the seeds first_seed ... first_seed + cfg.seeds - 1: the
    first into out_dir (its curves to history_path), the others into out_dir/seed<S>."""
    jobs = []
    for seed in range(first_seed, first_seed + cfg.seeds):
        first = seed == first_seed
        where = out_dir if first else out_dir / f"seed{seed}"
        jobs.append(
            Training(
                variant=variant,
                run_name=variant if first else f"{variant}/seed{seed}",
                cfg=cfg,
                seed=seed,
                deterministic=deterministic,
                split_files=split_files,
                out_dir=where,
                history_path=history_path if first else where / "history.csv",
                jit_compile=jit_compile,
            )
        )
    return jobs


def train_seeds(
    mlflow: Any,
    jobs: list[Training],
    threads: int,
    system_metrics_s: float | None,
    backup_every_s: float,
) -> list[dict[str, Any]]:
    """Run the trainings one after another, each as its own MLflow run (with MLflow's system
    metrics sampled every system_metrics_s seconds, unless None), backed up at most once every
    backup_every_s seconds; their summaries."""
    import keras

    from study.io.splits import load_split

    train, val = (load_split(path) for path in jobs[0].split_files)
    parent = project_run_id()
    if system_metrics_s is not None:
        mlflow.set_system_metrics_sampling_interval(system_metrics_s)
        mlflow.set_system_metrics_samples_before_logging(1)
    summaries = []
    for i, job in enumerate(jobs):
        if i:
            keras.backend.clear_session()  # each seed trains as in a fresh process
        configure_tf(job.seed, job.deterministic, threads)
        sampled = system_metrics_s is not None
        run = train_run(mlflow, job, (train, val), parent, sampled, backup_every_s=backup_every_s)
        summaries.append(run)
        print(f"train {job.run_name}: {json.dumps(summaries[-1])}", flush=True)
    return summaries


def train_run(
    mlflow: Any,
    job: Training,
    data: tuple[Split, Split],
    parent: str | None = None,
    system_metrics: bool = False,
    *,
    backup_every_s: float,
) -> dict[str, Any]:
    """One training as an MLflow run, nested under `parent` when given, with MLflow's system
    metrics if asked: job.out_dir gets best.keras, last.keras and train.json (written last:
    "finished"), job.history_path the per-epoch CSV. A killed run is resumed by the next one
    with the same resume key, from its last backup (at most one every backup_every_s seconds)."""
    cfg, files = job.cfg, list(job.split_files)
    tags = run_tags(job.variant, cfg, job.seed, job.deterministic, files)
    key = resume_key(cfg, job.seed, job.deterministic, files, job.jit_compile)
    work_dir = backup_dir(job.variant, job.seed, key)
    client = mlflow.MlflowClient()
    with claimed(work_dir):
        discard_abandoned(client, work_dir)
        run_id = resume_or_start(client, work_dir, key)
        run_name, parent_id = (None, None) if run_id else (job.run_name, parent)
        with mlflow.start_run(
            run_id=run_id,
            run_name=run_name,
            parent_run_id=parent_id,
            log_system_metrics=system_metrics,
        ) as active:
            mlflow.set_tags(tags)
            if run_id is None:  # a resumed run has these already
                mlflow.log_params(flat_config(cfg.model_dump(mode="json", exclude_unset=True)))
                splits = list(zip(job.split_files, data, strict=True))
                client.log_inputs(active.info.run_id, split_inputs(splits))
            meta = {"key": key, "run_id": active.info.run_id}
            logging = [RunLogger(), EpochProgress(cfg.epochs, label=f"train {job.run_name}")]
            train, val = data
            raw_input = load_raw_input(job.split_files[0])
            result = train_model(
                cfg,
                train,
                val,
                job.out_dir,
                work_dir,
                meta,
                logging,
                raw_input,
                jit_compile=job.jit_compile,
                seed=job.seed,
                backup_every_s=backup_every_s,
            )
            if run_id is not None:  # epochs the killed process did not get to log
                log_missing_epochs(client, run_id, result.history)
            models = {which: job.out_dir / f"{which}.keras" for which in ("best", "last")}
            raw_examples = load_raw_x(job.split_files[0])  # the signature's and input example
            best = result.best_epoch - 1
            summary = {
                "dataset": cfg.dataset,
                "seed": job.seed,
                "run_id": active.info.run_id,
                "key": key,  # what the weights depend on: study/training/backups.py
                "model_ids": log_checkpoints(models, raw_examples, {"variant": job.variant}),
                "best_epoch": result.best_epoch,
                "epochs_run": result.epochs_run,
                "best_val_loss": result.history["val_loss"][best],
                "best_val_accuracy": result.history["val_accuracy"][best],
                "train_time_s": round(result.train_time_s, 3),
                "config": cfg.model_dump(mode="json", exclude_unset=True),
            }
            metric_keys = ("best_epoch", "epochs_run", "train_time_s")
            mlflow.log_metrics({k: summary[k] for k in metric_keys})
            curves = learning_curves(result.history, result.best_epoch, job.run_name)
            mlflow.log_figure(curves, "plots/learning_curves.png")
            write_atomic(job.history_path, history_csv(result.history).encode())
            # train.json last: evaluate treats it as "this training finished"
            summary_json = json.dumps(summary, indent=2) + "\n"
            write_atomic(job.out_dir / "train.json", summary_json.encode())
            discard(work_dir)  # everything is written: nothing left to resume
    return summary
