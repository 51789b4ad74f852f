"""evaluate: score a variant's best checkpoint and last model on the held-out test split.

Usage: python -m stages.evaluate VARIANT
Writes metrics/<variant>.json (with `cv`: the crossval stage's folds of the variant scored,
mean and sd per metric; with `seeds`, when the seeds stage trained other seeds: each seed's
last and best models scored, mean and sd per metric) and plots/confusion/<variant>.csv, and
logs the same numbers to child runs "<variant>/last" and "<variant>/best" of the variant's
training run (and "<variant>/seed<S>/..." of each other seed's), with evaluate's params,
linked to the logged models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from stages.formats import DataError, load_split, split_path, write_atomic
from stages.params import (
    METRICS_DIR,
    MODELS_DIR,
    PLOTS_DIR,
    PREPARED_DIR,
    REPO_ROOT,
    SEEDS_DIR,
    SEEDS_FILE,
    load_params,
    require,
    run_stage,
    seed_dir,
    variant_arg,
)
from stages.scoring import METRIC_DIGITS, score_model, seeds_spread

# What evaluate reads from the train stage's models/<v>/train.json.
TRAIN_SUMMARY_KEYS = {
    "dataset",
    "seed",
    "loss",
    "depth",
    "activation",
    "run_id",
    "model_ids",
    "best_epoch",
    "epochs_run",
}


def evaluate_variant(
    trained: dict[str, Any], eval_cfg: dict[str, Any], model_dir: Path, test: tuple
) -> tuple[dict[str, Any], np.ndarray]:
    """Metrics for best and last (safe_mode loading) and the best model's predictions.

    `trained` is the train stage's summary (models/<v>/train.json): dataset, loss, depth,
    activation, best_epoch, epochs_run. Reading it instead of params keeps evaluate independent of
    training params: only its own params and the model files make it rerun.
    """
    import keras

    from stages.diagnostics import diagnose
    from stages.model import binary, encode_labels

    x, y = test
    diag = eval_cfg["diagnostics"]
    out: dict[str, Any] = {}
    preds = {}
    for which in ("last", "best"):
        model = keras.saving.load_model(model_dir / f"{which}.keras", safe_mode=True)
        out[which], preds[which] = score_model(model, x, y, trained, eval_cfg)
        # dead / saturated units and the gradient reaching the first layer (study, part 3)
        found = diagnose(
            model, trained, x, encode_labels(y, trained), diag["batch_size"], diag["saturation"]
        )
        out[which].update({k: round(v, METRIC_DIGITS) for k, v in found.items()})
    out["best_epoch"] = trained["best_epoch"]
    out["epochs_run"] = trained["epochs_run"]
    if binary(trained["dataset"]):
        majority = np.bincount(y).argmax()
        out["majority_accuracy"] = round(float(np.mean(y == majority)), METRIC_DIGITS)
    return out, preds["best"]


def cv_metrics(path: Path, variant: str, threshold: float) -> dict[str, Any] | None:
    """The crossval stage's folds (models/<v>/cv.json) as metrics: per metric the mean and
    sd over the folds (stages.reference.score_splits), or None for a variant without folds."""
    from stages.reference import score_splits

    if not path.is_file():
        raise DataError(f"{path}: not found; run `dvc repro crossval@{variant}`")
    doc = json.loads(path.read_text())
    if not doc["splits"]:
        return None
    scores = score_splits(doc["splits"], threshold)
    return {**scores, "folds": doc["folds"], "repeats": doc["repeats"]}


def seed_scores(
    seeds_dir: Path, variant: str, eval_cfg: dict[str, Any], test: tuple
) -> dict[int, tuple[dict[str, Any], dict[str, dict[str, float]]]]:
    """The seeds stage's other trainings of the variant (models/<v>/seeds/): per seed its
    train.json and the test scores of its last and best models."""
    import keras

    path = seeds_dir / SEEDS_FILE
    if not path.is_file():
        raise DataError(f"{path}: not found; run `dvc repro seeds@{variant}`")
    out = {}
    for seed in json.loads(path.read_text())["seeds"]:
        where = seed_dir(seeds_dir, seed)
        trained = read_train_summary(where / "train.json", variant)
        scores = {}
        for which in ("last", "best"):
            model = keras.saving.load_model(where / f"{which}.keras", safe_mode=True)
            scores[which] = score_model(model, *test, trained, eval_cfg)[0]
        out[seed] = (trained, scores)
    return out


def confusion_csv(y: np.ndarray, pred: np.ndarray) -> str:
    """One row per test example (actual, predicted): the input DVC's confusion plot wants."""
    rows = ["actual,predicted"] + [
        f"{a},{p}" for a, p in zip(y.tolist(), pred.tolist(), strict=True)
    ]
    return "\n".join(rows) + "\n"


def mlflow_metrics(metrics: dict[str, Any], which: str) -> dict[str, float]:
    """test_accuracy, test_loss, ... of the `which` model ("last" or "best") for MLflow."""
    flat = {f"test_{name}": value for name, value in metrics[which].items()}
    if "majority_accuracy" in metrics:
        flat["test_majority_accuracy"] = metrics["majority_accuracy"]
    for name, stats in metrics.get("cv", {}).items():  # the variant's, not the checkpoint's
        if isinstance(stats, dict):
            flat |= {f"cv_{name}_{k}": v for k, v in stats.items()}
    for name, stats in metrics.get("seeds", {}).items():  # this checkpoint's, across seeds
        if name.startswith(f"{which}_"):
            flat |= {f"seeds_{name}_{k}": stats[k] for k in ("mean", "sd")}
    return flat


def read_train_summary(path: Path, variant: str) -> dict[str, Any]:
    """The train stage's summary of a variant, or a DataError saying how to remake it."""
    if not path.is_file():
        raise DataError(f"{path}: not found; run `dvc repro train@{variant}`")
    trained = json.loads(path.read_text())
    missing = sorted(TRAIN_SUMMARY_KEYS - trained.keys())
    if missing:
        raise DataError(
            f"{path}: missing {', '.join(missing)} (written by an older train stage?);"
            f" run `dvc repro train@{variant}`"
        )
    return trained


def activation_figure(
    model_dir: Path, trained: dict[str, Any], x: np.ndarray, eval_cfg: dict[str, Any], title: str
) -> Any:
    """Histograms of the best model's hidden activations on x, or None without hidden layers."""
    import keras

    from stages.diagnostics import activation_histograms, hidden_activations

    if trained["depth"] == 0:
        return None
    model = keras.saving.load_model(model_dir / "best.keras", safe_mode=True)
    acts = hidden_activations(model, x, eval_cfg["batch_size"])
    level = eval_cfg["diagnostics"]["saturation"]
    return activation_histograms(acts, trained["activation"], title, level)


def log_evaluation(
    mlflow: Any,
    variant: str,
    trained: dict[str, Any],
    eval_cfg: dict[str, Any],
    metrics: dict[str, Any],
    confusion_path: Path | None = None,
    y: np.ndarray | None = None,
    pred: np.ndarray | None = None,
    histograms: Any = None,
) -> None:
    """Log an evaluation as child runs "<variant>/last" and "<variant>/best" of the training
    run, each with evaluate's params and its test metrics linked to that logged model.

    Runs per evaluation: a sweep of evaluate.* never rewrites what another evaluation logged
    (MLflow and metrics/*.json never disagree), and parallel sweeps never share a run. The
    common metric names (test_accuracy, test_loss, ...) make every variant's models sortable
    side by side in the experiment's Models tab. The confusion matrix (the best model's
    predictions `pred` of `y`) and histograms go to the best run when given.
    """
    from stages.figures import confusion_matrix_figure
    from stages.model import N_CLASSES
    from stages.tracking import config_hash, project_run_id, provenance_tags

    project_run_id()  # under `mlflow run`: nest under the training run, not the project's
    tags = {
        "variant": variant,
        "dataset": trained["dataset"],
        "stage": "evaluate",
        "evaluate_hash": config_hash(eval_cfg),
        **provenance_tags(),
    }
    for which in ("last", "best"):
        name, run_tags = f"{variant}/{which}", {**tags, "checkpoint": which}
        with mlflow.start_run(run_name=name, parent_run_id=trained["run_id"], tags=run_tags):
            mlflow.log_params({f"evaluate.{k}": v for k, v in eval_cfg.items()})
            model_id = trained["model_ids"][which]
            mlflow.log_metrics(mlflow_metrics(metrics, which), model_id=model_id)
            if which == "best" and confusion_path is not None:
                mlflow.log_artifact(str(confusion_path), "evaluation")
                title = f"{variant}: best checkpoint on test"
                fig = confusion_matrix_figure(y, pred, N_CLASSES[trained["dataset"]], title)
                mlflow.log_figure(fig, "plots/confusion_matrix.png")
                if histograms is not None:
                    mlflow.log_figure(histograms, "plots/activation_histograms.png")


def main() -> None:
    variant = variant_arg(__doc__)
    params = load_params()
    eval_cfg = require(params, "evaluate")
    model_dir = REPO_ROOT / MODELS_DIR / variant
    trained = read_train_summary(model_dir / "train.json", variant)

    from stages.tracking import setup_mlflow

    mlflow = setup_mlflow(params)
    test = load_split(split_path(REPO_ROOT / PREPARED_DIR, "test", trained["dataset"]))
    metrics, pred = evaluate_variant(trained, eval_cfg, model_dir, test)
    cv = cv_metrics(model_dir / "cv.json", variant, eval_cfg["threshold"])
    if cv is not None:
        metrics["cv"] = cv
    others = seed_scores(model_dir / SEEDS_DIR, variant, eval_cfg, test)
    if others:
        runs = {trained["seed"]: {w: metrics[w] for w in ("last", "best")}}
        metrics["seeds"] = seeds_spread(runs | {s: scores for s, (_, scores) in others.items()})

    metrics_path = REPO_ROOT / METRICS_DIR / f"{variant}.json"
    write_atomic(metrics_path, (json.dumps(metrics, indent=2, sort_keys=True) + "\n").encode())
    confusion_path = REPO_ROOT / PLOTS_DIR / "confusion" / f"{variant}.csv"
    write_atomic(confusion_path, confusion_csv(test[1], pred).encode())

    title = f"{variant}: best checkpoint on test"
    histograms = activation_figure(model_dir, trained, test[0], eval_cfg, title)
    log_evaluation(
        mlflow, variant, trained, eval_cfg, metrics, confusion_path, test[1], pred, histograms
    )
    for seed, (seed_trained, scores) in others.items():  # each seed's own runs and models
        log_evaluation(mlflow, f"{variant}/seed{seed}", seed_trained, eval_cfg, scores)
    print(f"evaluate {variant}: {json.dumps(metrics)}")


if __name__ == "__main__":
    run_stage(main)
