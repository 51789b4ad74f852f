"""End and remove training backups that nothing will resume (study.training.backups.tidy).

  python -m tools.tidy   # `make repro` runs it after `dvc repro`

A training killed during a run whose stage `dvc repro` then restores from DVC's cache
("is cached - skipping run") is never run again, so no stage would clean up after it: its
MLflow run would stay RUNNING and its backup would stay in .backup/.
"""

from __future__ import annotations

from study.config.cli import run_stage
from study.config.paths import MODELS_DIR, REPO_ROOT
from study.training.backups import has_backups, tidy


def main() -> None:
    if not has_backups():
        return  # nothing to look at: skip importing MLflow
    from study.config.params import load_params
    from study.tracking.store import setup_mlflow

    params = load_params()
    mlflow = setup_mlflow(params.mlflow)
    variants = set(params.study_variants())
    for path in tidy(mlflow.MlflowClient(), variants, REPO_ROOT / MODELS_DIR):
        print(f"tidy: removed {path} (its MLflow run, if still RUNNING, is now KILLED)")


if __name__ == "__main__":
    run_stage(main)
