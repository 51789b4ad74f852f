"""The crossval stage's input and settings: the raw non-test rows (prepare's train then val
rows), the stage on the tiny study with its test rows moved and its prepared files gone, and
the cross-validation settings validated up front."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest
import yaml
from conftest import thoracic_rows, write_csv
from inprocess import run_main

import stages.crossval
from study.config.errors import ConfigError
from study.config.params import load_params
from study.config.paths import METRICS_DIR, PREPARED_DIR, RAW_DIR
from study.config.sections import ThoracicFeatures
from study.crossval.folds import non_test_rows
from study.data.prepare import THORACIC_CSV, encode_features, split_rows, split_thoracic
from study.data.raw import read_thoracic_csv

FEATURES = ThoracicFeatures(drop_columns=[0], one_hot_columns=[1], standardize=True)


def test_non_test_rows_are_prepares_train_then_val_rows_raw(tmp_path):
    """The rows of the prepared train and val files, in their order, with the CSV's raw
    features: encoded with prepare's train rows they are the prepared files' features."""
    params = load_params()
    rows = thoracic_rows(60, 5)
    (tmp_path / "thoracic").mkdir()
    write_csv(tmp_path / THORACIC_CSV, rows)
    x, y = non_test_rows(tmp_path, params.prepare, seed=4)
    raw_x, raw_y = read_thoracic_csv(tmp_path / THORACIC_CSV)
    split = split_rows(raw_y, params.prepare.thoracic, 4)
    np.testing.assert_array_equal(x, raw_x[np.concatenate([split["train"], split["val"]])])
    prepared = split_thoracic(raw_x, raw_y, params.prepare.thoracic, 4, FEATURES)
    n = len(split["train"])
    np.testing.assert_array_equal(y, np.concatenate([prepared["train"][1], prepared["val"][1]]))
    encoded = encode_features(x, {"train": np.arange(n)}, FEATURES, "k")["train"]
    np.testing.assert_array_equal(encoded, prepared["train"][0])


def test_the_stage_cross_validates_a_listed_variant_without_the_test_rows(study, monkeypatch):
    """stages.crossval on the tiny study, its prepared files removed and its test rows' raw
    features moved far away: the folds are the train and val rows only, encoded per fold; a
    variant not in crossval.variants is refused."""
    params = load_params(study)
    csv = study / RAW_DIR / THORACIC_CSV
    x, y = read_thoracic_csv(csv)
    test_rows = split_rows(y, params.prepare.thoracic, params.seed)["test"]
    x = x.copy()  # read_thoracic_csv gives a read-only view
    x[test_rows] += 1000.0
    csv.unlink()  # a DVC-tracked file may be a link into the cache: write a new one
    write_csv(csv, np.column_stack([x, y]))
    shutil.rmtree(study / PREPARED_DIR)
    out = study / METRICS_DIR / "crossval" / "thoracic_bce.json"
    committed = json.loads(out.read_text())  # `dvc repro`'s, from the unchanged CSV
    out.unlink()
    run_main(stages.crossval, study, monkeypatch, "thoracic_bce")
    doc = json.loads(out.read_text())
    assert (doc["rows"], doc["folds"], doc["repeats"]) == (
        len(y) - len(test_rows),
        5,
        params.crossval.repeats,
    )
    assert doc["dataset"] == "thoracic"
    for model in ("variant", "logistic", "majority"):
        assert set(doc[model]) == {"auc", "balanced_accuracy", "accuracy"}
        assert 0 <= doc[model]["accuracy"]["mean"] <= 1
        assert len(doc[model]["auc"]["folds"]) == 5 * params.crossval.repeats
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
