"""Score a variant's trainings on the held-out test split (the evaluate stage): each seed's
best checkpoint and last model, the first seed's activation diagnostics, and the spread
across seeds; then log them to MLflow beside the trainings' runs and logged models."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from study.config.errors import DataError
from study.config.sections import Evaluate
from study.config.variant import N_CLASSES, Variant
from study.evaluation.diagnostics import (
    activation_histograms,
    diagnose,
    predict_with_activations,
)
from study.evaluation.figures import confusion_matrix_figure
from study.evaluation.scoring import score_model, score_outputs, seeds_spread
from study.io.files import finite
from study.tracking.lineage import split_inputs
from study.tracking.tags import config_hash, project_run_id, provenance_tags
from study.training.model import binary, encode_labels, takes_raw_input

CHECKPOINTS = ("last", "best")
# What evaluate reads from a training's train.json (study/training/run.py).
TRAIN_SUMMARY_KEYS = {
    "dataset",
    "seed",
    "run_id",
    "model_ids",
    "best_epoch",
    "epochs_run",
    "config",
}
# The training's facts metrics/<variant>.json repeats: deterministic ones only (not its time),
# so the file is byte-identical whenever the results are.
TRAIN_FACTS = ("best_epoch", "epochs_run", "best_val_loss", "best_val_accuracy")


@dataclass
class Evaluation:
    """A training scored: metrics per checkpoint, the best checkpoint's predictions and its
    hidden activations (the first seed only: [] otherwise or without hidden layers)."""

    trained: dict[str, Any]
    scores: dict[str, dict[str, Any]]
    pred: np.ndarray
    activations: list[np.ndarray]


def read_train_summary(path: Path, variant: str) -> dict[str, Any]:
    """A training's summary, or a DataError saying how to remake it."""
    if not path.is_file():
        raise DataError(f"{path}: not found; run `dvc repro` for variant {variant}")
    trained = json.loads(path.read_text())
    missing = sorted(TRAIN_SUMMARY_KEYS - trained.keys())
    if missing:
        raise DataError(
            f"{path}: missing {', '.join(missing)} (written by an older train stage?);"
            f" rerun the training of variant {variant}"
        )
    return trained


def trained_config(trained: dict[str, Any]) -> Variant:
    """The config the variant was trained with (train.json), so evaluate needs no train params."""
    return Variant.model_validate_json(json.dumps(trained["config"]))


def score_training(
    where: Path, trained: dict[str, Any], cfg: Variant, settings: Evaluate, test: tuple, first: bool
) -> Evaluation:
    """Both checkpoints of one training (safe_mode loading, as a consumer loads them) on the
    raw test examples; for the first seed also the dead/saturated units and the first layer's
    gradient (study, part 3)."""
    x, y = test
    diag = settings.diagnostics
    scores, preds, activations = {}, {}, []
    for which in CHECKPOINTS:
        path = where / f"{which}.keras"
        model = keras.saving.load_model(path, safe_mode=True)
        if not takes_raw_input(model):  # it would score raw examples as preprocessed ones
            raise DataError(
                f"{path}: takes preprocessed input (saved by an older train stage); rerun"
                " its training (dvc repro)"
            )
        if not first:
            scores[which], preds[which] = score_model(
                model, x, y, cfg, settings.batch_size, settings.threshold
            )
            continue
        outputs, acts = predict_with_activations(model, x, settings.batch_size)
        scores[which], preds[which] = score_outputs(
            model, outputs, x, y, cfg, settings.batch_size, settings.threshold
        )
        enc = encode_labels(y, cfg)
        found, acts = diagnose(model, cfg, x, enc, diag.batch_size, diag.saturation, acts)
        if scores[which].get("diverged"):  # NaN activations are neither dead nor alive
            found = dict.fromkeys(found)
        scores[which] |= finite(found)
        if which == "best":
            activations = acts
    return Evaluation(trained, scores, preds["best"], activations)


def evaluate_variant(
    model_dir: Path, first: dict[str, Any], settings: Evaluate, test: tuple
) -> tuple[dict[str, Any], list[Evaluation]]:
    """metrics/<variant>.json's content and each seed's Evaluation (the first seed first):
    model_dir holds the first seed's training (summary `first`) and the others' seed<S>/."""
    variant = model_dir.name
    cfg = trained_config(first)
    seeds = range(first["seed"], first["seed"] + cfg.seeds)
    evaluations = []
    for seed in seeds:
        where = model_dir if seed == first["seed"] else model_dir / f"seed{seed}"
        trained = first if where == model_dir else read_train_summary(where / "train.json", variant)
        evaluations.append(score_training(where, trained, cfg, settings, test, where == model_dir))
    main = evaluations[0]
    metrics: dict[str, Any] = {"dataset": cfg.dataset, **main.scores}
    metrics |= {key: first.get(key) for key in TRAIN_FACTS}
    if binary(cfg.dataset):
        y = test[1]
        metrics["majority_accuracy"] = float(np.mean(y == np.bincount(y).argmax()))
    if len(evaluations) > 1:
        metrics["seeds"] = seeds_spread({e.trained["seed"]: e.scores for e in evaluations})
    return finite(metrics), evaluations


def confusion_csv(y: np.ndarray, pred: np.ndarray) -> str:
    """One row per test example (actual, predicted): the input DVC's confusion plot wants."""
    rows = ["actual,predicted"] + [
        f"{a},{p}" for a, p in zip(y.tolist(), pred.tolist(), strict=True)
    ]
    return "\n".join(rows) + "\n"


def mlflow_metrics(metrics: dict[str, Any], which: str) -> dict[str, float]:
    """test_accuracy, test_loss, ... of the `which` checkpoint for MLflow (numbers only: a
    diverged model's null loss is left out); for the first seed also the spread across seeds."""
    flat = {
        f"test_{name}": value
        for name, value in metrics[which].items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    if "majority_accuracy" in metrics:
        flat["test_majority_accuracy"] = metrics["majority_accuracy"]
    for name, stats in metrics.get("seeds", {}).items():  # this checkpoint's, across seeds
        if name.startswith(f"{which}_"):
            flat |= {f"seeds_{name}_{k}": stats[k] for k in ("mean", "sd")}
    return flat


def log_evaluation(
    mlflow: Any,
    label: str,
    settings: Evaluate,
    evaluation: Evaluation,
    metrics: dict[str, Any] | None,
    test: tuple[Path, tuple[np.ndarray, np.ndarray]],
) -> None:
    """Log a training's evaluation as child runs "<label>/last" and "<label>/best" of its run,
    each with evaluate's params and its test metrics linked to that logged model. `metrics`:
    the variant's metrics file for its first seed (its runs also get the spread across seeds,
    the confusion matrix and the activation histograms), None for the other seeds. `test`:
    the test split file and its arrays, each run's input (context evaluation).

    Runs per evaluation: a sweep of evaluate.* never rewrites what another evaluation logged
    (MLflow and metrics/*.json never disagree), and parallel sweeps never share a run. The
    common metric names (test_accuracy, test_loss, ...) make every variant's models sortable
    side by side in the experiment's Models tab.
    """
    trained = evaluation.trained
    project_run_id()  # under `mlflow run`: nest under the training run, not the project's
    params = settings.model_dump()
    inputs = split_inputs([test])
    y = test[1][1]
    tags = {
        "variant": label.split("/")[0],
        "dataset": trained["dataset"],
        "stage": "evaluate",
        "evaluate_hash": config_hash(params),
        **provenance_tags(),
    }
    for which in CHECKPOINTS:
        run_tags = {**tags, "checkpoint": which}
        with mlflow.start_run(
            run_name=f"{label}/{which}", parent_run_id=trained["run_id"], tags=run_tags
        ) as run:
            mlflow.log_params({f"evaluate.{k}": v for k, v in params.items()})
            mlflow.MlflowClient().log_inputs(run.info.run_id, inputs)
            values = mlflow_metrics(metrics or {which: evaluation.scores[which]}, which)
            mlflow.log_metrics(values, model_id=trained["model_ids"][which])
            if which == "best" and metrics is not None:
                title = f"{label}: best checkpoint on test"
                classes = N_CLASSES[trained["dataset"]]
                figure = confusion_matrix_figure(y, evaluation.pred, classes, title)
                mlflow.log_figure(figure, "plots/confusion_matrix.png")
                if evaluation.activations:
                    activation = trained["config"]["activation"]
                    level = settings.diagnostics.saturation
                    hist = activation_histograms(evaluation.activations, activation, title, level)
                    mlflow.log_figure(hist, "plots/activation_histograms.png")
