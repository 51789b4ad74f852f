"""A training that ends in NaN: its evaluation, diagnostics, cross-validation and report still
succeed. A thoracic variant whose learning rate jumps to 1e30 after its first epoch diverges
in its second (TerminateOnNaN stops it; best.keras keeps epoch 1): the diverged checkpoint is
scored with a null loss, `diverged: true`, a null AUC and the reason; metrics files stay
valid JSON (no NaN or Infinity); compare.md says "diverged" where a number would be."""

from __future__ import annotations

import json
import math

import keras
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import thoracic_rows
from inprocess import run_main
from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score

import stages.compare
import stages.crossval
import stages.evaluate
import stages.variants
from study.config.params import load_params
from study.config.paths import (
    METRICS_DIR,
    MODELS_DIR,
    PLOTS_DIR,
    PREPARED_DIR,
    REPORTS_DIR,
    split_path,
)
from study.config.raw import read_params
from study.config.sections import Crossval, Evaluate
from study.config.variant import Variant
from study.crossval.folds import crossval_scores, summarize
from study.evaluation.diagnostics import activation_histograms, diagnose
from study.evaluation.evaluate import evaluate_variant, mlflow_metrics
from study.evaluation.scoring import DIVERGED
from study.io.splits import RawInput, load_split
from study.reports.compare import collect, to_markdown
from study.reports.crossval import references
from study.training.fitting import configure_tf
from study.training.model import encode_labels
from study.training.train import train_model

SETTINGS = Evaluate(
    batch_size=64, threshold=0.5, diagnostics={"batch_size": 32, "saturation": 0.99}
)
# 100 train rows in batches of 30: 4 steps per epoch, the rate 1e-3 in epoch 1, 1e30 after.
JUMP = {
    "name": "exponential_decay",
    "initial_learning_rate": 1e-3,
    "decay_steps": 4,
    "decay_rate": 1e33,
    "staircase": True,
}


def strict_json(text: str):
    """json.loads that fails on NaN, Infinity and -Infinity (Python's json accepts them)."""

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def variant(name: str, **fields) -> Variant:
    cfg = load_params().variant(name).model_dump(exclude_unset=True)
    return Variant.model_validate({**cfg, **fields})


def xy(n: int, seed: int):
    rows = thoracic_rows(n, seed)
    return rows[:, :-1].astype(np.float32), rows[:, -1].astype(np.int64)


@pytest.fixture(scope="module")
def diverged(tmp_path_factory):
    """thoracic_bce with JUMP trained for up to 4 epochs: models/thoracic_bce/ and train.json."""
    cfg = variant("thoracic_bce", epochs=4, steps_per_execution=1, lr_schedule=JUMP)
    x, y = xy(160, 5)
    train, val, test = (x[:100], y[:100]), (x[100:130], y[100:130]), (x[130:], y[130:])
    root = tmp_path_factory.mktemp("diverged")
    model_dir = root / "models" / "thoracic_bce"
    # seed 3: the jump leaves every weight NaN (with seeds 1 and 2 some stay finite)
    configure_tf(seed=3, deterministic=True, threads=1)
    as_is = RawInput(shape=(17,), dtype="float32")  # the rows are the raw input
    result = train_model(cfg, train, val, model_dir, root / "work", raw_input=as_is, seed=3)
    summary = {
        "dataset": "thoracic",
        "seed": 3,
        "run_id": "r",
        "model_ids": {"best": "m-best", "last": "m-last"},
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "best_val_loss": result.history["val_loss"][result.best_epoch - 1],
        "best_val_accuracy": result.history["val_accuracy"][result.best_epoch - 1],
        "train_time_s": round(result.train_time_s, 3),
        "config": cfg.model_dump(mode="json", exclude_unset=True),
    }
    (model_dir / "train.json").write_text(json.dumps(summary))
    metrics, _ = evaluate_variant(model_dir, summary, SETTINGS, test)
    return {"dir": model_dir, "result": result, "test": test, "cfg": cfg, "metrics": metrics}


def test_the_training_stops_at_nan_and_keeps_its_last_finite_checkpoint(diverged):
    result, model_dir = diverged["result"], diverged["dir"]
    assert result.epochs_run == 2 and result.best_epoch == 1  # TerminateOnNaN in epoch 2
    assert math.isfinite(result.history["val_loss"][0])
    assert math.isnan(result.history["loss"][1])
    last, best = (keras.saving.load_model(model_dir / f"{w}.keras") for w in ("last", "best"))
    assert not all(np.isfinite(w).all() for w in last.get_weights())
    assert all(np.isfinite(w).all() for w in best.get_weights())


def test_the_evaluation_scores_the_diverged_checkpoint_with_null_loss_and_auc(diverged):
    metrics, (x, y) = diverged["metrics"], diverged["test"]
    text = json.dumps(metrics)  # allow_nan=True: a NaN left in would show as NaN
    assert strict_json(text) == metrics
    last, best = metrics["last"], metrics["best"]
    assert last["diverged"] is True and last["loss"] is None
    assert last["auc"] is None and last["auc_undefined"] == DIVERGED
    assert "diverged" not in best and "auc_undefined" not in best
    assert best["loss"] > 0 and 0 <= best["auc"] <= 1
    # Its accuracy is what its predictions give: NaN is never >= the threshold, so class 0.
    assert last["accuracy"] == round(accuracy_score(y, np.zeros_like(y)), 6)
    assert last["balanced_accuracy"] == 0.5
    assert last["penalty"] == 0.0  # thoracic_bce has no regularizer
    best_model = keras.saving.load_model(diverged["dir"] / "best.keras")
    prob = best_model.predict(x, verbose=0)[:, 0]
    assert best["auc"] == round(roc_auc_score(y, prob), 6)
    assert best["balanced_accuracy"] == round(balanced_accuracy_score(y, prob >= 0.5), 6)
    # The diagnostics of a NaN model are null: its NaN activations are neither dead nor alive.
    assert last["first_layer_grad_norm"] is None and last["dead_fraction"] is None
    assert last["dead_fraction/hidden_1"] is None
    assert metrics["best_epoch"] == 1 and metrics["epochs_run"] == 2
    # MLflow gets numbers only: no null loss or AUC, no flag.
    assert set(mlflow_metrics(metrics, "last")) == {
        "test_penalty",
        "test_accuracy",
        "test_balanced_accuracy",
        "test_majority_accuracy",
    }


def test_the_diagnostics_and_histograms_of_a_diverged_model(diverged):
    """NaN weights: TF's relu maps NaN to 0, so its hidden units all read 0 ("dead"); the
    gradient norm is NaN (null in the metrics). Histograms leave out what is not finite."""
    cfg, (x, y) = diverged["cfg"], diverged["test"]
    model = keras.saving.load_model(diverged["dir"] / "last.keras")
    scores, acts = diagnose(model, cfg, x, encode_labels(y, cfg), 32, 0.99)
    assert math.isnan(scores["first_layer_grad_norm"]) and scores["dead_fraction"] == 1.0
    assert [a.shape for a in acts] == [(len(y), 30)] * 2
    fig = activation_histograms(acts, cfg.activation, "diverged", 0.99)
    assert len(fig.axes) == 2
    fig.savefig(diverged["dir"] / "hist.png")  # draws
    nan = np.full((4, 2), np.nan)  # a tanh or sigmoid layer passes NaN on
    partly = np.where(np.arange(8).reshape(4, 2) % 3 == 0, np.nan, 0.5)  # 3 NaN of 8
    fig = activation_histograms([nan, partly], "tanh", "diverged tanh", 0.99)
    fig.savefig(diverged["dir"] / "tanh.png")
    assert [ax.get_title() for ax in fig.axes] == ["hidden_1 (2 units)", "hidden_2 (2 units)"]
    assert [ax.patches[0].get_data().values.sum() for ax in fig.axes] == [0, 5]


def compare_table(report: str, section: str, dataset: str) -> dict[str, dict[str, str]]:
    """variant -> column -> cell of a dataset's table in one section of compare.md."""
    text = report.split(section, 1)[1].split(f"## {dataset}", 1)[1]
    text = text[text.index("\n|") + 1 :]  # the table: from its first line to a blank one
    lines = text.split("\n\n", 1)[0].splitlines()
    head, _, *rows = ([c.strip() for c in line.strip("|").split("|")] for line in lines)
    return {cells[0]: dict(zip(head, cells, strict=True)) for cells in rows}


def test_compare_says_diverged_for_that_checkpoint(diverged):
    metrics = {**diverged["metrics"]}
    frame = collect({"thoracic_bce": metrics}, {}, {"thoracic_bce": 1.0})
    report = to_markdown(frame)
    row = compare_table(report, "# Last vs best", "thoracic")["thoracic_bce"]
    assert row["last_loss"] == "diverged"
    assert float(row["best_loss"]) == pytest.approx(metrics["best"]["loss"], abs=1e-4)
    assert "last_auc" not in row and float(row["best_auc"]) > 0  # no AUC: an empty column


def test_a_fold_set_with_a_diverged_fold_has_null_means():
    ok = {"auc": 0.7, "balanced_accuracy": 0.6, "accuracy": 0.8}
    gone = {"auc": None, "balanced_accuracy": 0.5, "accuracy": 0.85}
    summary = summarize([ok, gone])
    assert summary["auc"] == {"mean": None, "sd": None, "folds": [0.7, None]}
    assert summary["accuracy"]["mean"] == pytest.approx(0.825)


def test_crossval_of_a_diverging_variant_is_reported_as_diverged():
    """Cross-validation has no TerminateOnNaN: a rate of 1e30 gives NaN probabilities on
    every fold; the summary's AUC is null, the file valid JSON, compare's table says so."""
    cfg = variant("thoracic_bce", epochs=1, steps_per_execution=4)
    optimizer = cfg.optimizer.model_copy(update={"learning_rate": 1e30})
    cfg = cfg.model_copy(update={"optimizer": optimizer})
    x, y = xy(120, 2)
    cv = Crossval(
        folds=2,
        repeats=1,
        logistic={"C": 1.0, "max_iter": 1000},
        variants={"thoracic": ["thoracic_bce"], "thoracic_clean": []},
    )
    configure_tf(seed=1, deterministic=True, threads=1)
    features = load_params().prepare.thoracic  # thoracic's encoding, fitted per fold
    doc = crossval_scores(cfg, (x, y), features, cv, seed=1, threshold=0.5)
    assert strict_json(json.dumps(doc)) == doc
    assert doc["variant"]["auc"] == {"mean": None, "sd": None, "folds": [None, None]}
    assert doc["variant"]["balanced_accuracy"] == {"mean": 0.5, "sd": 0.0, "folds": [0.5, 0.5]}
    assert doc["logistic"]["auc"]["mean"] > 0.5  # the references are unaffected
    metrics = {
        "dataset": "thoracic",
        "last": {"loss": 0.4, "accuracy": 0.8, "auc": 0.6, "balanced_accuracy": 0.5},
        "best": {"loss": 0.3, "accuracy": 0.85, "auc": 0.65, "balanced_accuracy": 0.55},
        "best_epoch": 1,
        "epochs_run": 2,
        "train_time_s": 1.0,
    }
    frame = collect({"thoracic_bce": metrics}, {"thoracic_bce": doc}, {"thoracic_bce": 1.0})
    assert pd.isna(frame.loc[0, "cv_auc_mean"])
    report = to_markdown(frame, references({"thoracic_bce": doc}))
    rows = compare_table(report, "# Cross-validated", "thoracic")
    assert rows["thoracic_bce"]["cv AUC"] == "diverged"
    assert rows["thoracic_bce"]["cv balanced accuracy"] == "0.500 ± 0.000"
    (words,) = [w for w in report.splitlines() if w.startswith("- **thoracic_bce**")]
    assert "AUC diverged cannot be compared with the majority baseline" in words


def test_the_stages_write_valid_metrics_and_a_report_for_a_diverged_model(study, monkeypatch):
    """On the tiny study: thoracic_bce's last model with NaN weights (as a diverged training
    leaves it) and a learning rate that makes its folds diverge; evaluate, crossval and
    compare run and say so."""
    from mlflow import MlflowClient

    model_dir = study / MODELS_DIR / "thoracic_bce"
    model = keras.saving.load_model(model_dir / "last.keras")
    model.set_weights([np.full_like(w, np.nan) for w in model.get_weights()])
    (model_dir / "last.keras").unlink()  # never write through into DVC's cache
    model.save(model_dir / "last.keras")
    raw = read_params(study)
    raw["variants"]["thoracic_bce"]["optimizer"] = {"learning_rate": 1e30}
    (study / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))

    run_main(stages.evaluate, study, monkeypatch, "thoracic_bce")
    metrics = strict_json((study / METRICS_DIR / "thoracic_bce.json").read_text())
    assert metrics["last"]["loss"] is None and metrics["last"]["diverged"] is True
    assert metrics["last"]["auc"] is None and metrics["last"]["auc_undefined"] == DIVERGED
    assert metrics["best"]["loss"] > 0 and "diverged" not in metrics["best"]
    _, y = load_split(split_path(study / PREPARED_DIR, "test", "thoracic"))
    assert metrics["last"]["accuracy"] == round(accuracy_score(y, np.zeros_like(y)), 6)
    confusion = (study / PLOTS_DIR / "confusion" / "thoracic_bce.csv").read_text()
    assert len(confusion.splitlines()) == len(y) + 1  # the best checkpoint's predictions

    run_main(stages.variants, study, monkeypatch)  # its merged config, as dvc repro would
    run_main(stages.crossval, study, monkeypatch, "thoracic_bce")
    folds = strict_json((study / METRICS_DIR / "crossval" / "thoracic_bce.json").read_text())
    auc = folds["variant"]["auc"]
    assert (auc["mean"], auc["sd"]) == (None, None) and set(auc["folds"]) == {None}

    run_main(stages.compare, study, monkeypatch)
    report = (study / REPORTS_DIR / "compare.md").read_text()
    row = compare_table(report, "# Last vs best", "thoracic")["thoracic_bce"]
    assert row["last_loss"] == "diverged" and float(row["best_loss"]) > 0
    cv = compare_table(report, "# Cross-validated", "thoracic")["thoracic_bce"]
    assert cv["cv AUC"] == "diverged"

    client = MlflowClient(tracking_uri=f"sqlite:///{study / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(raw["mlflow"]["experiment"])
    (run,) = client.search_runs(
        [experiment.experiment_id],
        "tags.mlflow.runName = 'thoracic_bce/last'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    assert "test_loss" not in run.data.metrics and "test_auc" not in run.data.metrics
    assert run.data.metrics["test_accuracy"] == metrics["last"]["accuracy"]
