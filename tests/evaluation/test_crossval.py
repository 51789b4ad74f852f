"""Cross-validation of the thoracic variants: stratified seeded folds of the non-test rows,
each variant refitted per fold (class weights included), the logistic and majority reference
on the same folds, and evaluate's summary of the folds; the new params validated up front."""

from __future__ import annotations

import copy
import json

import keras
import numpy as np
import pytest
from conftest import thoracic_rows
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from stages.crossval import crossval_predictions
from stages.evaluate import cv_metrics, mlflow_metrics
from stages.fitting import configure_tf, fit
from stages.formats import DataError, split_path
from stages.model import build_model
from stages.params import ConfigError, resolve_all_variants, resolve_variant
from stages.prepare import save_split
from stages.reference import (
    cv_splits,
    fold_scores,
    non_test_rows,
    reference_scores,
    score_splits,
    summarize,
)

CV = {"folds": 5, "repeats": 2, "logistic": {"C": 1.0, "max_iter": 1000, "class_weight": None}}


def xy(n=150, seed=2):
    rows = thoracic_rows(n, seed)
    return rows[:, :-1].astype(np.float32), rows[:, -1].astype(np.int64)


def test_folds_are_stratified_seeded_and_hold_out_each_row_once_per_repeat():
    _, y = xy()
    splits = cv_splits(y, CV, seed=3)
    assert len(splits) == 10
    for repeat in range(2):
        held = np.concatenate([h for _, h in splits[5 * repeat : 5 * repeat + 5]])
        assert sorted(held) == list(range(len(y)))  # every row held out once per repeat
    for fit_rows, held in splits:
        assert not set(fit_rows) & set(held)
        assert abs(y[held].sum() - y.sum() / 5) <= 1  # stratified: the positives spread evenly
    again, other = cv_splits(y, CV, seed=3), cv_splits(y, CV, seed=4)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(splits, again, strict=True))
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(splits, other, strict=True))
    assert not np.array_equal(splits[0][1], splits[5][1])  # the repeats reshuffle


def test_more_folds_than_rows_of_a_class_names_the_key():
    y = np.array([0] * 20 + [1] * 3)
    with pytest.raises(ConfigError, match=r"^crossval.folds: 5 folds .* the rarest class has 3"):
        cv_splits(y, CV, seed=0)


def test_fold_scores_summary_and_threshold():
    y = np.array([0, 0, 1, 1, 0])
    prob = np.array([0.1, 0.6, 0.7, 0.4, 0.2])
    scores = fold_scores(y, prob, prob >= 0.5)
    assert scores == pytest.approx(
        {"auc": 5 / 6, "balanced_accuracy": (2 / 3 + 1 / 2) / 2, "accuracy": 3 / 5}
    )
    summary = summarize([{"auc": 0.6, "balanced_accuracy": 0.5, "accuracy": 0.8}] * 2)
    assert summary["auc"] == {"mean": 0.6, "sd": 0.0}
    two = summarize([{**scores, "auc": 0.5}, {**scores, "auc": 0.7}])
    assert two["auc"]["sd"] == pytest.approx(np.std([0.5, 0.7], ddof=1), abs=1e-6)  # rounded
    splits = [{"y": y.tolist(), "probability": prob.tolist()}]
    assert score_splits(splits, 0.65)["accuracy"]["mean"] == 0.8  # 0.6 is now class 0


def test_logistic_reference_and_majority_on_the_same_folds():
    x, y = xy()
    ref = reference_scores(x, y, CV, seed=3, threshold=0.5)
    aucs, shares = [], []
    for fit_rows, held in cv_splits(y, CV, seed=3):
        model = LogisticRegression(C=1.0, max_iter=1000).fit(x[fit_rows], y[fit_rows])
        aucs.append(roc_auc_score(y[held], model.predict_proba(x[held])[:, 1]))
        shares.append(np.mean(y[held] == 0))
    assert ref["logistic"]["auc"]["mean"] == pytest.approx(np.mean(aucs), abs=1e-6)
    assert ref["logistic"]["auc"]["sd"] == pytest.approx(np.std(aucs, ddof=1), abs=1e-6)
    assert ref["majority"]["auc"] == {"mean": 0.5, "sd": 0.0}
    assert ref["majority"]["balanced_accuracy"] == {"mean": 0.5, "sd": 0.0}
    assert ref["majority"]["accuracy"]["mean"] == pytest.approx(np.mean(shares), abs=1e-6)
    assert (ref["folds"], ref["repeats"], ref["rows"]) == (5, 2, len(y))
    assert ref["logistic"]["auc"]["mean"] > 0.6  # the fixture's feature 3 carries signal


def small_cfg(params, **overrides):
    cfg = resolve_variant(params, "thoracic_bce_clean")
    return {**cfg, "epochs": 3, "steps_per_execution": 4, **overrides}


def test_each_fold_is_fitted_as_a_freshly_built_model(params):
    """The one model reset before every fold gives what a new model would (same weights,
    optimizer and dropout state), as train would fit it on the fold's rows."""
    x, y = xy()
    cfg = small_cfg(params)
    splits = cv_splits(y, CV, seed=3)[:2]
    configure_tf(seed=3, deterministic=True, threads=1)
    got = crossval_predictions(cfg, x, y, splits)
    for (fit_rows, held), fold in zip(splits, got, strict=True):
        keras.utils.set_random_seed(3)
        model = build_model(cfg, x.shape[1:])
        fit(model, cfg, (x[fit_rows], y[fit_rows]))
        prob = keras.ops.convert_to_numpy(model(x[held], training=False))[:, 0]
        assert fold["rows"] == held.tolist() and fold["y"] == y[held].tolist()
        np.testing.assert_allclose(fold["probability"], prob, atol=1e-6)


def test_balanced_class_weight_raises_the_positives_probabilities(params):
    x, y = xy()
    splits = cv_splits(y, CV, seed=3)[:1]
    means = {}
    for weight in (None, "balanced"):
        configure_tf(seed=3, deterministic=True, threads=1)
        cfg = small_cfg(params, class_weight=weight, epochs=10)
        (fold,) = crossval_predictions(cfg, x, y, splits)
        means[weight] = np.mean(fold["probability"])
    assert means["balanced"] > means[None] + 0.1  # the 15% positives weigh ~3.3 each


def test_non_test_rows_are_the_train_then_val_files(tmp_path):
    x, y = xy(30)
    split = {"train": (x[:20], y[:20]), "val": (x[20:25], y[20:25]), "test": (x[25:], y[25:])}
    save_split(split, tmp_path, "thoracic")
    got_x, got_y = non_test_rows(tmp_path, "thoracic")
    np.testing.assert_array_equal(got_x, x[:25])
    np.testing.assert_array_equal(got_y, y[:25])
    split_path(tmp_path, "test", "thoracic").unlink()  # never read
    assert len(non_test_rows(tmp_path, "thoracic")[1]) == 25


def test_evaluate_summarizes_the_folds(tmp_path):
    y = [0, 1, 0, 1]
    doc = {
        "dataset": "thoracic",
        "folds": 2,
        "repeats": 1,
        "splits": [
            {"rows": [0, 1], "y": y[:2], "probability": [0.2, 0.9]},
            {"rows": [2, 3], "y": y[2:], "probability": [0.6, 0.4]},
        ],
    }
    (tmp_path / "cv.json").write_text(json.dumps(doc))
    cv = cv_metrics(tmp_path / "cv.json", "v", threshold=0.5)
    assert cv["folds"] == 2 and cv["repeats"] == 1
    assert cv["auc"] == {"mean": 0.5, "sd": pytest.approx(np.std([1.0, 0.0], ddof=1), abs=1e-6)}
    expected = np.mean([balanced_accuracy_score([0, 1], [0, 1]), 0.0])
    assert cv["balanced_accuracy"]["mean"] == pytest.approx(expected)
    flat = mlflow_metrics({"best": {"accuracy": 0.8}, "cv": cv}, "best")
    assert flat["test_accuracy"] == 0.8 and flat["cv_auc_mean"] == 0.5 and "cv_folds" not in flat
    (tmp_path / "cv.json").write_text(json.dumps({"dataset": "fashion_mnist", "splits": []}))
    assert cv_metrics(tmp_path / "cv.json", "v", 0.5) is None
    with pytest.raises(DataError, match=r"run `dvc repro crossval@v`"):
        cv_metrics(tmp_path / "missing.json", "v", 0.5)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda p: p["variants"]["thoracic_bce"].update(class_weight="even"),
            "variants.thoracic_bce.class_weight: unknown value 'even'; allowed: balanced, null,",
        ),
        (
            lambda p: p["variants"]["thoracic_bce"].update(class_weight={1: 3.0}),
            "variants.thoracic_bce.class_weight: a mapping needs one weight per class 0, 1",
        ),
        (
            lambda p: p["variants"]["thoracic_bce"].update(class_weight={0: 1.0, 1: 0}),
            r"variants.thoracic_bce.class_weight\[1\]: must be > 0",
        ),
        (
            lambda p: p["crossval"].update(datasets=["fashion_mnist"]),
            r"crossval.datasets\[0\]: unknown value 'fashion_mnist'; allowed: thoracic, thor",
        ),
        (lambda p: p["crossval"].update(folds=1), "crossval.folds: must be >= 2, got 1"),
        (lambda p: p.pop("crossval"), "crossval: missing"),
        (
            lambda p: p["prepare"]["thoracic_clean"].update(drop_columns=[1]),
            "prepare.thoracic_clean.one_hot_columns: column.s. 1 also in drop_columns",
        ),
    ],
)
def test_new_settings_fail_up_front_naming_the_key(params, change, message):
    bad = copy.deepcopy(params)
    change(bad)
    with pytest.raises(ConfigError, match=f"^{message}"):
        resolve_all_variants(bad)


def test_a_variant_without_class_weight_keeps_working(params):
    cfg = resolve_variant(params, "thoracic_bce")
    assert "class_weight" not in cfg  # as before the field existed: no weighting
    assert resolve_variant(params, "thoracic_bce_clean_balanced")["class_weight"] == "balanced"
