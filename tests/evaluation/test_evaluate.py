"""study.evaluation.evaluate: last vs best on the test split, the thoracic extras, what
evaluate reads of a training and what it logs to MLflow; the evaluate stage's metrics file
against an independent computation on the tiny study's saved models."""

from __future__ import annotations

import json

import keras
import mlflow
import numpy as np
import pytest
from conftest import thoracic_rows
from sklearn.metrics import accuracy_score, balanced_accuracy_score, log_loss, roc_auc_score

from study.config.errors import DataError
from study.config.params import load_params
from study.config.paths import METRICS_DIR, MODELS_DIR, PLOTS_DIR, PREPARED_DIR, split_path
from study.config.sections import Evaluate
from study.evaluation.evaluate import (
    TRAIN_FACTS,
    confusion_csv,
    evaluate_variant,
    mlflow_metrics,
    read_train_summary,
    trained_config,
)
from study.io.splits import RawInput, load_raw_x, load_split
from study.training.fitting import configure_tf
from study.training.train import train_model

SETTINGS = Evaluate(
    batch_size=64, threshold=0.5, diagnostics={"batch_size": 32, "saturation": 0.99}
)


def thoracic_split():
    rows = thoracic_rows(160, 5)
    x, y = rows[:, :-1].astype(np.float32), rows[:, -1].astype(np.int64)
    return (x[:100], y[:100]), (x[100:130], y[100:130]), (x[130:], y[130:])


def train_summary(cfg, seed, result) -> dict:
    """train.json as study.training.run writes it (without the MLflow run behind it)."""
    best = result.best_epoch - 1
    return {
        "dataset": cfg.dataset,
        "seed": seed,
        "run_id": "r",
        "key": "k",
        "model_ids": {"best": "m-best", "last": "m-last"},
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "best_val_loss": result.history["val_loss"][best],
        "best_val_accuracy": result.history["val_accuracy"][best],
        "train_time_s": round(result.train_time_s, 3),
        "config": cfg.model_dump(mode="json", exclude_unset=True),
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """thoracic_bce trained for 3 epochs into models/thoracic_bce/ of a temporary directory."""
    cfg = load_params().variant("thoracic_bce").model_copy(update={"epochs": 3})
    configure_tf(seed=1, deterministic=True, threads=1)
    train, val, test = thoracic_split()
    root = tmp_path_factory.mktemp("evaluate")
    model_dir = root / "models" / "thoracic_bce"
    as_is = RawInput(shape=(17,), dtype="float32")  # the rows are the raw input
    result = train_model(cfg, train, val, model_dir, root / "work", raw_input=as_is, seed=1)
    summary = train_summary(cfg, 1, result)
    (model_dir / "train.json").write_text(json.dumps(summary))
    return model_dir, summary, result, test


def test_thoracic_metrics_have_auc_balanced_majority_and_the_training_facts(trained):
    model_dir, _, result, test = trained
    first = read_train_summary(model_dir / "train.json", "thoracic_bce")
    metrics, (evaluation,) = evaluate_variant(model_dir, first, SETTINGS, test)
    scores = {"loss", "penalty", "accuracy", "auc", "balanced_accuracy"}
    diagnostics = {"dead_fraction", "dead_fraction/hidden_1", "dead_fraction/hidden_2"}
    assert set(metrics["last"]) == scores | diagnostics | {"first_layer_grad_norm"}
    assert set(metrics["best"]) == set(metrics["last"])
    assert 0 <= metrics["best"]["dead_fraction"] <= 1
    assert set(metrics) == {"dataset", "last", "best", "majority_accuracy", *TRAIN_FACTS}
    assert metrics["dataset"] == "thoracic" and "seeds" not in metrics  # one seed
    assert metrics["best_epoch"] == result.best_epoch and metrics["epochs_run"] == 3
    assert metrics["best_val_loss"] == round(min(result.history["val_loss"]), 6)
    assert "train_time_s" not in metrics  # a wall time: the file stays byte-identical
    y = test[1]
    assert metrics["majority_accuracy"] == round(float(np.mean(y == 0)), 6)
    pred = evaluation.pred
    assert set(np.unique(pred)) <= {0, 1}
    assert metrics["best"]["accuracy"] == round(accuracy_score(y, pred), 6)
    assert evaluation.trained == first and evaluation.scores["best"] == metrics["best"]
    assert [a.shape for a in evaluation.activations] == [(len(y), 30)] * 2  # best, 2 layers
    json.dumps(metrics, allow_nan=False)


def test_the_config_evaluate_uses_is_the_one_trained(trained):
    _, summary, _, _ = trained
    cfg = trained_config(summary)
    assert cfg == load_params().variant("thoracic_bce").model_copy(update={"epochs": 3})
    assert cfg.loss == "binary_crossentropy" and cfg.depth == 2


def test_mlflow_metric_names():
    metrics = {
        "last": {"loss": None, "accuracy": 0.5, "diverged": True, "auc": None},
        "best": {"loss": 0.9, "accuracy": 0.6, "auc": 0.7, "auc_undefined": None},
        "best_epoch": 3,
        "majority_accuracy": 0.8,
        "seeds": {
            "seeds": [42, 43],
            "last_accuracy": {"mean": 0.5, "sd": 0.1, "values": [0.4, 0.6]},
            "best_accuracy": {"mean": 0.65, "sd": 0.05, "values": [0.6, 0.7]},
        },
    }
    # numbers only: a diverged checkpoint's null loss and its `diverged` flag are left out
    assert mlflow_metrics(metrics, "last") == {
        "test_accuracy": 0.5,
        "test_majority_accuracy": 0.8,
        "seeds_last_accuracy_mean": 0.5,
        "seeds_last_accuracy_sd": 0.1,
    }
    best = mlflow_metrics(metrics, "best")
    assert best["test_auc"] == 0.7 and best["test_loss"] == 0.9
    assert best["seeds_best_accuracy_mean"] == 0.65 and "seeds_last_accuracy_mean" not in best


def test_confusion_csv_rows():
    assert confusion_csv(np.array([1, 0]), np.array([1, 1])) == "actual,predicted\n1,1\n0,1\n"


def test_train_summary_missing_or_stale_says_what_to_rerun(tmp_path):
    path = tmp_path / "train.json"
    with pytest.raises(DataError, match=r"train\.json: not found; run `dvc repro` for variant v"):
        read_train_summary(path, "v")
    path.write_text(json.dumps({"best_epoch": 2, "epochs_run": 3}))
    missing = r"missing config, dataset, model_ids, run_id, seed \(written by an older train"
    with pytest.raises(DataError, match=missing + r".*rerun the training of variant v"):
        read_train_summary(path, "v")
    summary = {"dataset": "thoracic", "run_id": "r", "best_epoch": 2, "config": {}}
    summary |= {"model_ids": {"best": "m-1", "last": "m-2"}, "seed": 42, "epochs_run": 3}
    path.write_text(json.dumps(summary))
    assert read_train_summary(path, "v") == summary


def test_the_study_metrics_equal_sklearn_on_the_saved_models(built_study):
    """metrics/thoracic_bce.json of the tiny study (evaluate@thoracic_bce) against an
    independent computation: sklearn on the test predictions of each checkpoint as a consumer
    loads it (MLflow's logged model, on the raw test rows: the CSV's 17 columns), and on the
    confusion CSV's saved predictions; the new training facts against the val split."""
    repo = built_study
    metrics = json.loads((repo / METRICS_DIR / "thoracic_bce.json").read_text())
    trained = json.loads((repo / MODELS_DIR / "thoracic_bce" / "train.json").read_text())
    threshold = load_params(repo).evaluate.threshold
    prepared = repo / PREPARED_DIR
    test_file = split_path(prepared, "test", "thoracic")
    x, y = load_raw_x(test_file), load_split(test_file)[1]
    assert x.shape[1:] == (17,) and x.dtype == np.float32  # read_thoracic_csv's columns
    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    try:
        models = {
            w: mlflow.keras.load_model(f"models:/{i}") for w, i in trained["model_ids"].items()
        }
    finally:
        mlflow.set_tracking_uri(None)
    for which in ("last", "best"):
        model = models[which]
        prob = model.predict(x, verbose=0)[:, 0]
        pred = (prob >= threshold).astype(int)
        scores = metrics[which]
        assert scores["auc"] == pytest.approx(roc_auc_score(y, prob), abs=2e-6)
        assert scores["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-6)
        expected = balanced_accuracy_score(y, pred)
        assert scores["balanced_accuracy"] == pytest.approx(expected, abs=1e-6)
        assert scores["loss"] == pytest.approx(log_loss(y, prob, labels=[0, 1]), abs=1e-5)
        if which == "best":  # the val split's loss and accuracy train.json recorded
            x_val, y_val = load_split(split_path(prepared, "val", "thoracic"))  # preprocessed
            trained_part = keras.Model(model.get_layer("hidden_1").input, model.output)
            val_prob = trained_part.predict(x_val, verbose=0)[:, 0]
            val_loss = log_loss(y_val, val_prob, labels=[0, 1])
            assert metrics["best_val_loss"] == pytest.approx(val_loss, abs=1e-5)
            val_accuracy = accuracy_score(y_val, val_prob >= 0.5)  # Keras's BinaryAccuracy
            assert metrics["best_val_accuracy"] == pytest.approx(val_accuracy, abs=1e-6)
    lines = (repo / PLOTS_DIR / "confusion" / "thoracic_bce.csv").read_text().splitlines()
    assert lines[0] == "actual,predicted"
    saved = np.array([line.split(",") for line in lines[1:]], dtype=int)
    np.testing.assert_array_equal(saved[:, 0], y)
    assert metrics["best"]["accuracy"] == round(accuracy_score(saved[:, 0], saved[:, 1]), 6)
    expected = balanced_accuracy_score(saved[:, 0], saved[:, 1])
    assert metrics["best"]["balanced_accuracy"] == round(expected, 6)
    majority = max(np.mean(y == 0), np.mean(y == 1))
    assert metrics["majority_accuracy"] == round(majority, 6)
