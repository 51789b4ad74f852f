"""End and remove training backups that nothing will resume (see stages/backups.tidy).

  python -m tools.tidy   # `make repro` runs it after `dvc repro`

A training killed during a run whose stage `dvc repro` then restores from DVC's cache
("is cached - skipping run") is never run again, so no stage would clean up after it: its
MLflow run would stay RUNNING and its backup would stay in .backup/.
"""

from __future__ import annotations

from stages.params import (
    BACKUP_DIR,
    MODELS_DIR,
    REPO_ROOT,
    load_params,
    project_root,
    run_stage,
    study_variants,
)


def main() -> None:
    if not any(project_root().joinpath(BACKUP_DIR).glob("*/*")):
        return  # nothing to look at: skip importing MLflow
    from stages.backups import tidy
    from stages.tracking import setup_mlflow

    params = load_params()
    mlflow = setup_mlflow(params)
    variants = set(study_variants(params))
    for path in tidy(mlflow.MlflowClient(), variants, REPO_ROOT / MODELS_DIR):
        print(f"tidy: removed {path} (its MLflow run, if still RUNNING, is now KILLED)")


if __name__ == "__main__":
    run_stage(main)
