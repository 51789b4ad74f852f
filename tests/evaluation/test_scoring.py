"""study.evaluation.scoring: a model's test scores (data loss apart from the penalty, accuracy,
AUC and balanced accuracy of binary data) against numpy and scikit-learn; finite()."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import thoracic_rows
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    log_loss,
    mean_squared_error,
    roc_auc_score,
)

from study.config.params import load_params
from study.evaluation.scoring import score_model
from study.io.files import finite
from study.training.fitting import configure_tf
from study.training.model import build_model

BATCH, THRESHOLD = 64, 0.5


@pytest.fixture(scope="module")
def variants():
    return load_params()


def thoracic_test():
    rows = thoracic_rows(60, 5)
    return rows[:, :-1].astype(np.float32), rows[:, -1].astype(np.int64)


def fashion_test(n=64):
    rng = np.random.default_rng(0)
    return rng.random((n, 28, 28), dtype=np.float32), rng.integers(0, 10, n)


def test_score_model_accuracy_matches_predictions(variants):
    cfg = variants.variant("baseline")
    configure_tf(seed=2, deterministic=True, threads=1)
    x, y = fashion_test(50)
    model = build_model(cfg, x.shape[1:])
    scores, pred = score_model(model, x, y, cfg, BATCH, THRESHOLD)
    probs = model.predict(x, verbose=0)
    np.testing.assert_array_equal(pred, probs.argmax(axis=1))
    assert scores["accuracy"] == round(accuracy_score(y, pred), 6)
    assert set(scores) == {"loss", "penalty", "accuracy"}  # no AUC for ten classes


@pytest.mark.parametrize("variant", ["weight_decay", "baseline", "thoracic_mse"])
def test_test_loss_is_the_data_loss_without_the_penalty(variants, variant):
    """`loss` is the loss function on the predictions (sklearn agrees); model.evaluate()'s
    L2/L1 terms are reported apart as `penalty`, zero for an unregularized model."""
    cfg = variants.variant(variant)
    configure_tf(seed=3, deterministic=True, threads=1)
    x, y = thoracic_test() if cfg.dataset == "thoracic" else fashion_test()
    model = build_model(cfg, x.shape[1:])
    scores, _ = score_model(model, x, y, cfg, BATCH, THRESHOLD)
    probs = model.predict(x, verbose=0)
    if cfg.loss == "mean_squared_error":
        expected = mean_squared_error(y, probs.reshape(-1))
    else:
        expected = log_loss(y, probs, labels=list(range(10)))
    assert np.isclose(scores["loss"], expected, atol=2e-6)
    total = model.evaluate(x, y, batch_size=BATCH, verbose=0, return_dict=True)
    assert np.isclose(scores["loss"] + scores["penalty"], total["loss"], atol=1e-4)
    if variant == "weight_decay":
        assert scores["penalty"] > 0.01
    else:
        assert scores["penalty"] == 0.0


@pytest.mark.parametrize("variant", ["thoracic_bce", "thoracic_cce"])
def test_binary_scores_match_sklearn_for_either_head(variants, variant):
    """A sigmoid head (bce) and a two-unit softmax (cce): AUC of the class-1 probability,
    balanced accuracy and accuracy of `probability >= threshold`."""
    cfg = variants.variant(variant)
    configure_tf(seed=4, deterministic=True, threads=1)
    x, y = thoracic_test()
    model = build_model(cfg, x.shape[1:])
    out = model.predict(x, verbose=0)
    positive = out[:, 0] if out.shape[1] == 1 else out[:, 1]
    threshold = float(np.median(positive))  # both classes predicted, whatever the weights
    scores, pred = score_model(model, x, y, cfg, BATCH, threshold)
    np.testing.assert_array_equal(pred, (positive >= threshold).astype(int))
    assert scores["auc"] == round(roc_auc_score(y, positive), 6)
    assert scores["balanced_accuracy"] == round(balanced_accuracy_score(y, pred), 6)
    assert scores["accuracy"] == round(accuracy_score(y, pred), 6)
    assert "diverged" not in scores and "auc_undefined" not in scores


def test_auc_of_rows_of_one_class_is_null_with_the_reason(variants):
    cfg = variants.variant("thoracic_bce")
    x, y = thoracic_test()
    model = build_model(cfg, x.shape[1:])
    scores, _ = score_model(model, x[y == 0], y[y == 0], cfg, BATCH, THRESHOLD)
    assert scores["auc"] is None
    assert scores["auc_undefined"] == "the rows hold one class only"
    assert math.isfinite(scores["loss"]) and "diverged" not in scores


def test_finite_rounds_and_nulls_nan_and_inf_at_any_depth():
    value = {
        "a": np.float32(0.1234567891),
        "b": [float("nan"), np.float64("inf"), -math.inf, 2],
        "c": {"d": (1.0000004, float("nan"))},
        "e": True,
        "f": "text",
        "g": None,
    }
    out = finite(value)
    assert out == {
        "a": 0.123457,
        "b": [None, None, None, 2],
        "c": {"d": [1.0, None]},
        "e": True,
        "f": "text",
        "g": None,
    }
    assert type(out["a"]) is float
    json.dumps(out, allow_nan=False)  # what a metrics file may hold
