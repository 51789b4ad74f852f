"""evaluate: score a variant's best checkpoint and last model on the held-out test split.

Usage: python -m stages.evaluate VARIANT   (dvc.yaml: evaluate@<variant>, evaluate_searched)
Reads models/<variant>/ (each seed's train.json holds the config it was trained with, so no
train params are needed) and the test split of its dataset (its raw examples: the models,
as a consumer loads them, take raw input); writes metrics/<variant>.json and
plots/confusion/<variant>.csv, and logs child runs "<variant>/last" and "<variant>/best" of
each training's MLflow run (study/evaluation/evaluate.py).
"""

from __future__ import annotations

import json

from study.config.cli import name_arg, run_stage
from study.config.params import load_params
from study.config.paths import (
    METRICS_DIR,
    MODELS_DIR,
    PLOTS_DIR,
    PREPARED_DIR,
    REPO_ROOT,
    split_path,
)
from study.evaluation.evaluate import (
    confusion_csv,
    evaluate_variant,
    log_evaluation,
    read_train_summary,
)
from study.io.files import write_atomic
from study.io.splits import load_raw_x, load_split
from study.tracking.store import setup_mlflow
from study.training.backups import tidy


def main() -> None:
    variant = name_arg(__doc__)
    params = load_params()
    mlflow = setup_mlflow(params.mlflow)
    tidy(mlflow.MlflowClient(), set(params.study_variants()), REPO_ROOT / MODELS_DIR)
    model_dir = REPO_ROOT / MODELS_DIR / variant
    first = read_train_summary(model_dir / "train.json", variant)
    test_file = split_path(REPO_ROOT / PREPARED_DIR, "test", first["dataset"])
    test = load_split(test_file)
    raw_test = (load_raw_x(test_file), test[1])  # the models take raw examples
    metrics, evaluations = evaluate_variant(model_dir, first, params.evaluate, raw_test)
    text = json.dumps(metrics, indent=2, sort_keys=True, allow_nan=False) + "\n"
    write_atomic(REPO_ROOT / METRICS_DIR / f"{variant}.json", text.encode())
    confusion = confusion_csv(test[1], evaluations[0].pred)
    write_atomic(REPO_ROOT / PLOTS_DIR / "confusion" / f"{variant}.csv", confusion.encode())
    for i, evaluation in enumerate(evaluations):
        label = variant if i == 0 else f"{variant}/seed{evaluation.trained['seed']}"
        scores = None if i else metrics
        log_evaluation(mlflow, label, params.evaluate, evaluation, scores, (test_file, test))
    print(f"evaluate {variant}: {json.dumps(metrics)}")


if __name__ == "__main__":
    run_stage(main)
