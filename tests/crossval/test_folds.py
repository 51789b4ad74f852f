"""study.crossval.folds and the crossval stage: stratified seeded folds of the non-test
rows, the variant refitted per fold (one model reset per fold, as a fresh one; class weights
included), the logistic and majority reference on the same folds, the summary over the folds;
the cross-validation settings validated up front."""

from __future__ import annotations

import copy
import json

import keras
import numpy as np
import pytest
import yaml
from conftest import thoracic_rows
from inprocess import run_main
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score

import stages.crossval
import study.crossval.folds as crossval
from study.config.errors import ConfigError
from study.config.params import load_params
from study.config.paths import METRICS_DIR, PREPARED_DIR, split_path
from study.config.sections import Crossval
from study.crossval.folds import (
    crossval_scores,
    cv_splits,
    fold_scores,
    non_test_rows,
    reference_folds,
    summarize,
    variant_folds,
)
from study.io.splits import load_split, save_split
from study.training.fitting import configure_tf, fit
from study.training.model import build_model

CV = Crossval(
    folds=5,
    repeats=2,
    logistic={"C": 1.0, "max_iter": 1000, "class_weight": None},
    variants={"thoracic": [], "thoracic_clean": []},
)


def xy(n=150, seed=2):
    rows = thoracic_rows(n, seed)
    return rows[:, :-1].astype(np.float32), rows[:, -1].astype(np.int64)


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
    assert summary["auc"] == {"mean": 0.6, "sd": 0.0}
    two = summarize([{**scores, "auc": 0.5}, {**scores, "auc": 0.7}])
    assert two["auc"]["sd"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert summarize([scores])["accuracy"] == {"mean": 0.6, "sd": 0.0}  # one fold: sd 0


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
        doc = crossval_scores(small_cfg(), (x, y), cv, 3, 0.5, lambda i, s: ticks.append(i))
    assert ticks == [0, 1, 2, 3, 4]
    return doc, seen[:5], cv_splits(y, 5, 1, seed=3)


def test_each_fold_is_fitted_as_a_freshly_built_model(scored):
    """The one model reset before every fold gives what a new model would (same weights,
    optimizer and dropout state), as train would fit it on the fold's rows: the last fold,
    after four resets."""
    x, y = xy()
    cfg = small_cfg()
    _, probabilities, splits = scored
    fit_rows, held = splits[-1]
    keras.utils.set_random_seed(3)
    model = build_model(cfg, x.shape[1:])
    fit(model, cfg, (x[fit_rows], y[fit_rows]))
    fresh = keras.ops.convert_to_numpy(model(x[held], training=False))[:, 0]
    np.testing.assert_allclose(probabilities[-1], fresh, atol=1e-6)


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
    for fit_rows, held in splits:
        model = LogisticRegression(C=1.0, max_iter=1000).fit(x[fit_rows], y[fit_rows])
        aucs.append(roc_auc_score(y[held], model.predict_proba(x[held])[:, 1]))
        shares.append(np.mean(y[held] == 0))
    assert doc["logistic"]["auc"]["mean"] == pytest.approx(np.mean(aucs), abs=1e-6)
    assert doc["logistic"]["auc"]["sd"] == pytest.approx(np.std(aucs, ddof=1), abs=1e-6)
    assert doc["majority"]["auc"] == {"mean": 0.5, "sd": 0.0}
    assert doc["majority"]["balanced_accuracy"] == {"mean": 0.5, "sd": 0.0}
    assert doc["majority"]["accuracy"]["mean"] == pytest.approx(np.mean(shares), abs=1e-6)
    assert doc["logistic"]["auc"]["mean"] > 0.6  # the fixture's feature 3 carries signal


def test_the_majority_is_the_fit_rows_majority_class_whichever_it_is():
    x = np.arange(24, dtype=np.float32).reshape(12, 2)
    y = np.array([1] * 7 + [0] * 5)
    held = np.array([0, 1, 11])  # two 1s and a 0
    splits = [(np.arange(2, 11), held), (np.arange(5, 11), held)]  # 5 of 9, 2 of 6 are 1s
    folds = reference_folds(x, y, splits, CV.logistic, seed=0, threshold=0.5)["majority"]
    assert [f["accuracy"] for f in folds] == pytest.approx([2 / 3, 1 / 3])
    assert [f["auc"] for f in folds] == [0.5, 0.5]  # a constant probability ranks nothing
    assert [f["balanced_accuracy"] for f in folds] == [0.5, 0.5]


def test_balanced_class_weight_raises_the_positives_probabilities(monkeypatch):
    x, y = xy()
    seen = spy_on_folds(monkeypatch)
    splits = cv_splits(y, 5, 1, seed=3)[:1]
    for weight in (None, "balanced"):
        configure_tf(seed=3, deterministic=True, threads=1)
        variant_folds(small_cfg(class_weight=weight, epochs=6), x, y, splits, threshold=0.5)
    unweighted, balanced = (np.mean(p) for p in seen)
    assert balanced > unweighted + 0.1  # the 15% positives weigh ~3.3 each


def test_non_test_rows_are_the_train_then_val_files(tmp_path):
    x, y = xy(30)
    split = {"train": (x[:20], y[:20]), "val": (x[20:25], y[20:25]), "test": (x[25:], y[25:])}
    save_split(split, tmp_path, "thoracic")
    got_x, got_y = non_test_rows(tmp_path, "thoracic")
    np.testing.assert_array_equal(got_x, x[:25])
    np.testing.assert_array_equal(got_y, y[:25])
    split_path(tmp_path, "test", "thoracic").unlink()  # never read
    assert len(non_test_rows(tmp_path, "thoracic")[1]) == 25


def test_the_stage_cross_validates_a_listed_variant_without_the_test_split(study, monkeypatch):
    """stages.crossval on the tiny study, its test split removed: the folds are the train and
    val rows only; a variant not in crossval.variants is refused."""
    prepared = study / PREPARED_DIR
    rows = sum(len(load_split(split_path(prepared, s, "thoracic"))[1]) for s in ("train", "val"))
    split_path(prepared, "test", "thoracic").unlink()
    out = study / METRICS_DIR / "crossval" / "thoracic_bce.json"
    committed = json.loads(out.read_text())  # `dvc repro`'s, with the test split present
    out.unlink()
    run_main(stages.crossval, study, monkeypatch, "thoracic_bce")
    doc = json.loads(out.read_text())
    params = load_params(study)
    assert (doc["rows"], doc["folds"], doc["repeats"]) == (rows, 5, params.crossval.repeats)
    assert doc["dataset"] == "thoracic"
    for model in ("variant", "logistic", "majority"):
        assert set(doc[model]) == {"auc", "balanced_accuracy", "accuracy"}
        assert 0 <= doc[model]["accuracy"]["mean"] <= 1
    assert doc == committed  # the same folds, fits and scores: the test rows played no part
    message = r"^crossval.variants.fashion_mnist: 'baseline' is not listed"
    with pytest.raises(ConfigError, match=message):
        run_main(stages.crossval, study, monkeypatch, "baseline")


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
            lambda p: p["crossval"]["logistic"].update(class_weight={0: 1.0}),
            "crossval.logistic.class_weight: a mapping needs one weight per class 0, 1",
        ),
        (lambda p: p["crossval"].update(folds=1), "crossval.folds: must be >= 2, got 1"),
        (lambda p: p["crossval"].update(repeats=0), "crossval.repeats: must be > 0, got 0"),
        (lambda p: p.pop("crossval"), "crossval: missing"),
        (
            lambda p: p["prepare"]["thoracic_clean"].update(drop_columns=[1]),
            r"prepare.thoracic_clean.one_hot_columns: column\(s\) 1 also in drop_columns",
        ),
    ],
)
def test_the_settings_fail_up_front_naming_the_key(params, tmp_path, change, message):
    bad = copy.deepcopy(params)
    change(bad)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match=f"^{message}"):
        load_params(tmp_path)


def test_a_variant_without_class_weight_keeps_working():
    params = load_params()
    assert params.variant("thoracic_bce").class_weight is None  # no weighting
    assert params.variant("thoracic_bce_clean_balanced").class_weight == "balanced"
