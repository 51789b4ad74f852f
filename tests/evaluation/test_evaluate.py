"""stages.evaluate: last vs best on the test split, thoracic extras, MLflow names."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import thoracic_rows

from stages.evaluate import (
    confusion_csv,
    evaluate_variant,
    mlflow_metrics,
    read_train_summary,
)
from stages.formats import DataError
from stages.model import build_model
from stages.params import resolve_variant
from stages.scoring import score_model
from stages.train import configure_tf, train_model

EVAL = {"batch_size": 64, "threshold": 0.5, "diagnostics": {"batch_size": 32, "saturation": 0.99}}


def thoracic_split():
    rows = thoracic_rows(160, 5)
    x, y = rows[:, :-1].astype(np.float32), rows[:, -1].astype(np.int64)
    return (x[:100], y[:100]), (x[100:130], y[100:130]), (x[130:], y[130:])


def test_thoracic_metrics_have_auc_balanced_and_majority(params, tmp_path):
    cfg = {**resolve_variant(params, "thoracic_bce"), "epochs": 3}
    configure_tf(seed=1, deterministic=True, threads=1)
    train, val, test = thoracic_split()
    result = train_model(cfg, train, val, tmp_path, tmp_path / "work")
    (tmp_path / "train.json").write_text(
        json.dumps({"best_epoch": result.best_epoch, "epochs_run": result.epochs_run})
    )
    trained = {**cfg, "best_epoch": result.best_epoch, "epochs_run": result.epochs_run}
    metrics, pred = evaluate_variant(trained, EVAL, tmp_path, test)
    scores = {"loss", "penalty", "accuracy", "auc", "balanced_accuracy"}
    diagnostics = {"dead_fraction", "dead_fraction/hidden_1", "dead_fraction/hidden_2"}
    assert set(metrics["last"]) == scores | diagnostics | {"first_layer_grad_norm"}
    assert 0 <= metrics["best"]["dead_fraction"] <= 1
    assert set(metrics["best"]) == set(metrics["last"])
    assert metrics["best_epoch"] == result.best_epoch and metrics["epochs_run"] == 3
    y = test[1]
    assert metrics["majority_accuracy"] == round(float(np.mean(y == 0)), 6)
    assert np.isclose(metrics["best"]["accuracy"], np.mean(pred == y), atol=1e-6)
    assert set(np.unique(pred)) <= {0, 1}


def test_score_model_accuracy_matches_predictions(params):
    cfg = resolve_variant(params, "baseline")
    configure_tf(seed=2, deterministic=True, threads=1)
    model = build_model(cfg)
    rng = np.random.default_rng(0)
    x = rng.random((50, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, 50)
    scores, pred = score_model(model, x, y, cfg, EVAL)
    probs = model.predict(x, verbose=0)
    np.testing.assert_array_equal(pred, probs.argmax(axis=1))
    assert scores["accuracy"] == round(float(np.mean(pred == y)), 6)
    assert set(scores) == {"loss", "penalty", "accuracy"}


def test_mlflow_metric_names():
    metrics = {
        "last": {"loss": 1.0, "accuracy": 0.5},
        "best": {"loss": 0.9, "accuracy": 0.6, "auc": 0.7},
        "best_epoch": 3,
        "epochs_run": 5,
        "majority_accuracy": 0.8,
    }
    assert mlflow_metrics(metrics, "last") == {
        "test_loss": 1.0,
        "test_accuracy": 0.5,
        "test_majority_accuracy": 0.8,
    }
    assert mlflow_metrics(metrics, "best")["test_auc"] == 0.7


def test_confusion_csv_rows():
    assert confusion_csv(np.array([1, 0]), np.array([1, 1])) == "actual,predicted\n1,1\n0,1\n"


def test_train_summary_missing_or_stale_says_which_stage_to_rerun(tmp_path):
    path = tmp_path / "train.json"
    with pytest.raises(DataError, match=r"train\.json: not found; run `dvc repro train@v`"):
        read_train_summary(path, "v")
    path.write_text(json.dumps({"best_epoch": 2, "epochs_run": 3}))
    missing = r"missing activation, dataset, depth, loss, model_ids, run_id, seed .*train@v"
    with pytest.raises(DataError, match=missing):
        read_train_summary(path, "v")
    summary = {"dataset": "thoracic", "loss": "poisson", "run_id": "r", "best_epoch": 2}
    summary |= {"depth": 2, "activation": "relu"}
    summary["model_ids"] = {"best": "m-1", "last": "m-2"}
    summary["seed"] = 42
    path.write_text(json.dumps({**summary, "epochs_run": 3}))
    assert read_train_summary(path, "v")["epochs_run"] == 3


@pytest.mark.parametrize("variant", ["weight_decay", "baseline", "thoracic_mse"])
def test_test_loss_is_the_data_loss_without_the_penalty(params, variant):
    """`loss` is the loss function on the predictions (sklearn agrees); model.evaluate()'s
    L2/L1 terms are reported apart as `penalty`, zero for an unregularized model."""
    from sklearn.metrics import log_loss, mean_squared_error

    cfg = resolve_variant(params, variant)
    configure_tf(seed=3, deterministic=True, threads=1)
    model = build_model(cfg)
    if cfg["dataset"] == "thoracic":
        _, _, (x, y) = thoracic_split()
    else:
        rng = np.random.default_rng(0)
        x, y = rng.random((64, 28, 28), dtype=np.float32), rng.integers(0, 10, 64)
    scores, _ = score_model(model, x, y, cfg, EVAL)
    probs = model.predict(x, verbose=0)
    if cfg["loss"] == "mean_squared_error":
        expected = mean_squared_error(y, probs.reshape(-1))
    else:
        expected = log_loss(y, probs, labels=list(range(10)))
    assert np.isclose(scores["loss"], expected, atol=2e-6)
    total = model.evaluate(x, y, batch_size=EVAL["batch_size"], verbose=0, return_dict=True)
    assert np.isclose(scores["loss"] + scores["penalty"], total["loss"], atol=1e-4)
    if variant == "weight_decay":
        assert scores["penalty"] > 0.01
    else:
        assert scores["penalty"] == 0.0
