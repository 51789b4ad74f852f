"""study.crossval.folds and the crossval stage: stratified seeded folds of the raw non-test
rows, each fold's features encoded on its fit rows only (prepare's encode_features), the
variant refitted per fold (one model per feature count reset per fold, as a fresh one; class
weights included), the logistic and majority reference on the same folds, each fold's scores
and their summary; the cross-validation settings validated up front."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from conftest import thoracic_rows
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import study.crossval.folds as crossval
from study.config.errors import ConfigError
from study.config.params import load_params
from study.config.sections import Crossval, ThoracicFeatures
from study.crossval.folds import (
    crossval_scores,
    cv_splits,
    encoded_folds,
    fold_scores,
    reference_folds,
    summarize,
    variant_folds,
)
from study.data.prepare import encode_features
from study.training.fitting import configure_tf, fit
from study.training.model import build_model

CV = Crossval(
    folds=5,
    repeats=2,
    logistic={"C": 1.0, "max_iter": 1000, "class_weight": None},
    variants={"thoracic": [], "thoracic_clean": []},
)


# As prepare.thoracic_clean: column 0 dropped, column 1 one-hot, the others z-scored.
FEATURES = ThoracicFeatures(drop_columns=[0], one_hot_columns=[1], standardize=True)


def xy(n=150, seed=2):
    """Raw rows: column 1 a category (2, 3, 4; one row 8: missing from one fold's fit rows)."""
    rows = thoracic_rows(n, seed)
    rows[:, 1] = 2 + np.arange(n) % 3
    rows[7, 1] = 8
    return rows[:, :-1].astype(np.float32), rows[:, -1].astype(np.int64)


def folds_of(x, splits, features=FEATURES):
    return encoded_folds(x, splits, features, "prepare.thoracic_clean")


def test_folds_are_stratified_seeded_and_hold_out_each_row_once_per_repeat():
    _, y = xy()
    splits = cv_splits(y, 5, 2, seed=3)
    assert len(splits) == 10
    for repeat in range(2):
        held = np.concatenate([h for _, h in splits[5 * repeat : 5 * repeat + 5]])
        assert sorted(held) == list(range(len(y)))  # every row held out once per repeat
    for fit_rows, held in splits:
        assert not set(fit_rows) & set(held)
        assert abs(y[held].sum() - y.sum() / 5) <= 1  # stratified: the positives spread evenly
    again, other = cv_splits(y, 5, 2, seed=3), cv_splits(y, 5, 2, seed=4)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(splits, again, strict=True))
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(splits, other, strict=True))
    assert not np.array_equal(splits[0][1], splits[5][1])  # the repeats reshuffle


def test_more_folds_than_rows_of_a_class_names_the_key():
    y = np.array([0] * 20 + [1] * 3)
    with pytest.raises(ConfigError, match=r"^crossval.folds: 5 folds .* the rarest class has 3"):
        cv_splits(y, 5, 1, seed=0)


def test_fold_scores_and_the_summary_over_the_folds():
    y = np.array([0, 0, 1, 1, 0])
    prob = np.array([0.1, 0.6, 0.7, 0.4, 0.2])
    scores = fold_scores(y, prob, prob >= 0.5)
    assert scores == pytest.approx(
        {"auc": 5 / 6, "balanced_accuracy": (2 / 3 + 1 / 2) / 2, "accuracy": 3 / 5}
    )
    assert fold_scores(y, prob, prob >= 0.65)["accuracy"] == 0.8  # 0.6 is now class 0
    summary = summarize([{"auc": 0.6, "balanced_accuracy": 0.5, "accuracy": 0.8}] * 2)
    assert summary["auc"] == {"mean": 0.6, "sd": 0.0, "folds": [0.6, 0.6]}
    two = summarize([{**scores, "auc": 0.5}, {**scores, "auc": 0.7}])
    assert two["auc"]["sd"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert two["auc"]["folds"] == [0.5, 0.7]  # each fold's, in order: the report pairs them
    assert summarize([scores])["accuracy"] == {"mean": 0.6, "sd": 0.0, "folds": [0.6]}
    diverged = summarize([{**scores, "auc": None}, scores])["auc"]
    assert diverged == {"mean": None, "sd": None, "folds": [None, scores["auc"]]}


def small_cfg(**fields):
    cfg = load_params().variant("thoracic_bce_clean")
    return cfg.model_copy(update={"epochs": 3, "steps_per_execution": 4, **fields})


def spy_on_folds(monkeypatch) -> list[np.ndarray]:
    """The held-out probabilities scored fold by fold (the variant's, then the references')."""
    seen = []

    def spy(y, prob, pred):
        seen.append(np.array(prob))
        return fold_scores(y, prob, pred)

    monkeypatch.setattr(crossval, "fold_scores", spy)
    return seen


@pytest.fixture(scope="module")
def scored():
    """crossval_scores of thoracic_bce_clean on 5 folds, and the variant's probabilities."""
    x, y = xy()
    cv = CV.model_copy(update={"repeats": 1})
    with pytest.MonkeyPatch.context() as monkeypatch:
        seen = spy_on_folds(monkeypatch)
        configure_tf(seed=3, deterministic=True, threads=1)
        ticks = []
        doc = crossval_scores(
            small_cfg(), (x, y), FEATURES, cv, 3, 0.5, lambda i, s: ticks.append(i)
        )
    assert ticks == [0, 1, 2, 3, 4]
    return doc, seen[:5], cv_splits(y, 5, 1, seed=3)


def test_each_fold_is_fitted_as_a_freshly_built_model_on_its_own_encoding(scored):
    """The model reset before every fold gives what a new model would (same weights,
    optimizer and dropout state), as train would fit it on the fold's rows encoded by
    encode_features on those rows: the last fold of the first fold's width, after resets.
    The fold without category 8 in its fit rows has one column less (its own model)."""
    x, y = xy()
    cfg = small_cfg()
    _, probabilities, splits = scored
    widths = [len(np.unique(x[fit_rows, 1])) + 15 for fit_rows, _ in splits]
    assert widths.count(18) == 1 and widths[0] == 19  # one fold without category 8
    last = max(i for i, w in enumerate(widths) if w == widths[0])
    fit_rows, held = splits[last]
    xs = encode_features(x, {"train": fit_rows, "held": held}, FEATURES, "k")
    keras.utils.set_random_seed(3)
    model = build_model(cfg, (widths[0],))
    fit(model, cfg, (xs["train"], y[fit_rows]), seed=3)
    fresh = keras.ops.convert_to_numpy(model(xs["held"], training=False))[:, 0]
    np.testing.assert_allclose(probabilities[last], fresh, atol=1e-6)


def test_each_folds_encoding_is_fitted_on_its_fit_rows_only():
    """z-score statistics and one-hot categories come from each fold's fit rows: the numeric
    columns have mean 0 and sd 1 on the fit rows, a category seen only in held-out rows is
    all 0, and the fit rows' features stay the same when the held-out rows' raw values move."""
    x, y = xy()
    splits = cv_splits(y, 5, 1, seed=3)
    for (x_fit, x_held), (fit_rows, held) in zip(folds_of(x, splits), splits, strict=True):
        k = len(np.unique(x[fit_rows, 1]))  # the one-hot columns come first (column 1's)
        assert x_fit.shape[1] == x_held.shape[1] == k + 15  # column 0 dropped
        np.testing.assert_allclose(x_fit[:, k:].mean(axis=0), 0, atol=1e-5)
        np.testing.assert_allclose(x_fit[:, k:].std(axis=0), 1, atol=1e-4)
        if 7 in held:  # row 7's category 8 is not among the fit rows': no column
            assert k == 3 and not x_held[list(held).index(7), :k].any()
    moved = x.copy()
    moved[splits[0][1]] += 1000.0
    np.testing.assert_array_equal(folds_of(moved, splits[:1])[0][0], folds_of(x, splits[:1])[0][0])


def test_crossval_scores_summarize_the_variants_folds(scored):
    """The summary against an independent computation: sklearn on each fold's held-out
    probabilities, mean and sample sd over the folds."""
    doc, probabilities, splits = scored
    _, y = xy()
    assert set(doc) == {"dataset", "folds", "repeats", "rows", "variant", "logistic", "majority"}
    assert (doc["dataset"], doc["folds"], doc["repeats"]) == ("thoracic_clean", 5, 1)
    assert doc["rows"] == 150
    held = [rows for _, rows in splits]
    aucs = [roc_auc_score(y[h], p) for h, p in zip(held, probabilities, strict=True)]
    balanced = [
        balanced_accuracy_score(y[h], p >= 0.5) for h, p in zip(held, probabilities, strict=True)
    ]
    assert doc["variant"]["auc"]["folds"] == [round(a, 6) for a in aucs]
    assert doc["variant"]["auc"]["mean"] == round(np.mean(aucs), 6)
    assert doc["variant"]["auc"]["sd"] == round(np.std(aucs, ddof=1), 6)
    assert doc["variant"]["balanced_accuracy"]["mean"] == round(np.mean(balanced), 6)
    accuracy = [accuracy_score(y[h], p >= 0.5) for h, p in zip(held, probabilities, strict=True)]
    assert doc["variant"]["accuracy"]["mean"] == round(np.mean(accuracy), 6)
    assert len({round(float(p.mean()), 4) for p in probabilities}) > 1  # five different fits
    json.dumps(doc, allow_nan=False)


def test_the_references_are_a_logistic_regression_and_the_majority_on_the_same_folds(scored):
    doc, _, splits = scored
    x, y = xy()
    aucs, shares = [], []
    for fit_rows, held in splits:  # independently: scikit-learn's encoders, fitted per fold
        model = make_pipeline(
            ColumnTransformer(
                [
                    ("category", OneHotEncoder(handle_unknown="ignore"), [1]),
                    ("numeric", StandardScaler(), list(range(2, 17))),
                ]
            ),
            LogisticRegression(C=1.0, max_iter=1000),
        ).fit(x[fit_rows], y[fit_rows])
        aucs.append(roc_auc_score(y[held], model.predict_proba(x[held])[:, 1]))
        shares.append(np.mean(y[held] == 0))
    assert doc["logistic"]["auc"]["folds"] == pytest.approx(aucs, abs=1e-6)
    assert doc["logistic"]["auc"]["mean"] == pytest.approx(np.mean(aucs), abs=1e-6)
    assert doc["logistic"]["auc"]["sd"] == pytest.approx(np.std(aucs, ddof=1), abs=1e-6)
    assert doc["majority"]["auc"] == {"mean": 0.5, "sd": 0.0, "folds": [0.5] * 5}
    assert doc["majority"]["balanced_accuracy"] == {"mean": 0.5, "sd": 0.0, "folds": [0.5] * 5}
    assert doc["majority"]["accuracy"]["mean"] == pytest.approx(np.mean(shares), abs=1e-6)
    assert doc["logistic"]["auc"]["mean"] > 0.6  # the fixture's feature 3 carries signal


def test_the_majority_is_the_fit_rows_majority_class_whichever_it_is():
    x = np.arange(24, dtype=np.float32).reshape(12, 2)
    y = np.array([1] * 7 + [0] * 5)
    held = np.array([0, 1, 11])  # two 1s and a 0
    splits = [(np.arange(2, 11), held), (np.arange(5, 11), held)]  # 5 of 9, 2 of 6 are 1s
    encoded = [(x[f], x[h]) for f, h in splits]
    folds = reference_folds(encoded, y, splits, CV.logistic, seed=0, threshold=0.5)["majority"]
    assert [f["accuracy"] for f in folds] == pytest.approx([2 / 3, 1 / 3])
    assert [f["auc"] for f in folds] == [0.5, 0.5]  # a constant probability ranks nothing
    assert [f["balanced_accuracy"] for f in folds] == [0.5, 0.5]


def test_balanced_class_weight_raises_the_positives_probabilities(monkeypatch):
    x, y = xy()
    seen = spy_on_folds(monkeypatch)
    splits = cv_splits(y, 5, 1, seed=3)[:1]
    for weight in (None, "balanced"):
        configure_tf(seed=3, deterministic=True, threads=1)
        cfg = small_cfg(class_weight=weight, epochs=6)
        variant_folds(cfg, folds_of(x, splits), y, splits, threshold=0.5, seed=3)
    unweighted, balanced = (np.mean(p) for p in seen)
    assert balanced > unweighted + 0.1  # the 15% positives weigh ~3.3 each
