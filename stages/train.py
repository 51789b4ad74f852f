"""train: fit one variant with each of its seeds; keep the best checkpoint (lowest val_loss)
and the last model of each, and log every training to MLflow.

Usage: python -m stages.train VARIANT   (dvc.yaml: train@<variant>, train_searched)
Trains the config in variants/<variant>.json (the searched variant: search/best.yaml merged);
refuses one that params.yaml no longer merges to (run outside DVC after an edit), naming the
stage to rerun (study.config.params.variant_config).
Writes models/<variant>/ (best.keras, last.keras, train.json; seed<S>/ for the variant's other
seeds) and plots/history/<variant>.csv (study/training/run.py).
"""

from __future__ import annotations

from study.config.cli import name_arg, run_stage
from study.config.params import load_params, variant_config
from study.config.paths import MODELS_DIR, PLOTS_DIR, PREPARED_DIR, REPO_ROOT, split_path
from study.tracking.store import setup_mlflow
from study.training.backups import tidy
from study.training.run import seed_trainings, train_seeds


def main() -> None:
    variant = name_arg(__doc__)
    params = load_params()
    cfg = variant_config(params, variant)
    mlflow = setup_mlflow(params.mlflow)  # fails fast, before loading data or TensorFlow
    tidy(mlflow.MlflowClient(), set(params.study_variants()), REPO_ROOT / MODELS_DIR)
    prepared = REPO_ROOT / PREPARED_DIR
    train_file, val_file = (split_path(prepared, s, cfg.dataset) for s in ("train", "val"))
    jobs = seed_trainings(
        variant,
        cfg,
        params.seed,
        params.deterministic,
        (train_file, val_file),
        REPO_ROOT / MODELS_DIR / variant,
        REPO_ROOT / PLOTS_DIR / "history" / f"{variant}.csv",
        params.train.jit_compile,
    )
    train = params.train
    train_seeds(mlflow, jobs, train.threads, params.mlflow.system_metrics_s, train.backup_every_s)


if __name__ == "__main__":
    run_stage(main)
