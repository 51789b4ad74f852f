"""study.data.prepare: seeded stratified splits, standardization, cleaned thoracic features,
Fashion-MNIST scaling; settings validated by study.config.sections. What prepare() and
stages/prepare.py write: test_prepare_output."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import fashion_arrays, thoracic_rows
from prepare_settings import RAW_FEATURES, clean_cfg, fashion_cfg, thoracic_cfg

from study.config.errors import ConfigError, DataError
from study.config.paths import SPLITS
from study.config.sections import ThoracicFeatures
from study.data.prepare import encode_features, split_fashion, split_rows, split_thoracic


def thoracic_xy(n=200):
    rows = thoracic_rows(n, 0)
    return rows[:, :-1].astype(np.float32), rows[:, -1].astype(np.int64)


def test_thoracic_split_is_stratified_seeded_and_standardized():
    x, y = thoracic_xy()
    split = split_thoracic(x, y, thoracic_cfg(), seed=1)
    sizes = {k: len(v[1]) for k, v in split.items()}
    assert sizes == {"train": 140, "val": 30, "test": 30}
    for _, ys in split.values():  # stratified: each part keeps the positive rate
        assert abs(ys.mean() - y.mean()) < 0.05
    np.testing.assert_allclose(split["train"][0].mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(split["train"][0].std(axis=0), 1, atol=1e-4)
    again = split_thoracic(x, y, thoracic_cfg(), seed=1)
    np.testing.assert_array_equal(again["test"][0], split["test"][0])
    other = split_thoracic(x, y, thoracic_cfg(), seed=2)  # another seed, other rows
    assert not np.array_equal(other["test"][0], split["test"][0])


def test_split_rows_partition_the_rows_by_the_fractions():
    """The rows both thoracic datasets share: every row in exactly one split, val and test
    each their fraction of the whole."""
    _, y = thoracic_xy(470)
    rows = split_rows(y, thoracic_cfg(val_fraction=0.2, test_fraction=0.1), seed=3)
    assert {k: len(v) for k, v in rows.items()} == {"train": 329, "val": 94, "test": 47}
    assert sorted(np.concatenate(list(rows.values())).tolist()) == list(range(470))
    for part in rows.values():
        assert abs(y[part].mean() - y.mean()) < 0.02
    again = split_rows(y, thoracic_cfg(val_fraction=0.2, test_fraction=0.1), seed=3)
    assert all(np.array_equal(again[k], rows[k]) for k in rows)


def test_thoracic_raw_features_when_standardize_off():
    x, y = thoracic_xy()
    split = split_thoracic(x, y, thoracic_cfg(standardize=False), seed=1)
    all_rows = {tuple(r) for r in x.tolist()}
    assert {tuple(r) for r in split["train"][0].tolist()} <= all_rows


@pytest.mark.parametrize(
    ("val", "test", "message"),
    [
        (0.5, 0.5, "prepare.thoracic: val_fraction + test_fraction must be < 1, got 1"),
        (0, 0.2, "prepare.thoracic.val_fraction: must be > 0, got 0"),
        (0.2, 1.2, "prepare.thoracic.test_fraction: must be < 1, got 1.2"),
        (0.2, "0.1", "prepare.thoracic.test_fraction: must be a number, got '0.1'"),
    ],
)
def test_thoracic_bad_fractions(val, test, message):
    with pytest.raises(ConfigError) as err:
        thoracic_cfg(val_fraction=val, test_fraction=test)
    assert str(err.value) == message


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"one_hot_columns": [0, 1]},
            "prepare.thoracic_clean.one_hot_columns: column(s) 0 also in drop_columns",
        ),
        (
            {"drop_columns": [0, 2, 0]},
            "prepare.thoracic_clean.drop_columns: a column is listed twice: [0, 2, 0]",
        ),
        ({"one_hot_columns": [-1]}, "prepare.thoracic_clean.one_hot_columns[0]: must be >= 0"),
        ({"onehot_columns": [1]}, "prepare.thoracic_clean: unknown field(s) onehot_columns;"),
    ],
)
def test_bad_feature_columns_name_the_key(fields, message):
    with pytest.raises(ConfigError) as err:
        clean_cfg(**fields)
    assert str(err.value).startswith(message)


def test_fashion_bad_val_fraction():
    with pytest.raises(ConfigError, match=r"^prepare\.fashion_mnist\.val_fraction: must be < 1"):
        fashion_cfg(val_fraction=1.0)


def fashion_raw():
    (tx, ty), (sx, sy) = fashion_arrays(200, 0), fashion_arrays(50, 1)
    return {"train_x": tx, "train_y": ty, "test_x": sx, "test_y": sy}


def test_fashion_scaled_and_validation_carved_from_train():
    split = split_fashion(fashion_raw(), fashion_cfg(), seed=0)
    assert len(split["train"][1]) == 180 and len(split["val"][1]) == 20
    assert len(split["test"][1]) == 50
    x = split["train"][0]
    assert x.dtype == np.float32 and x.min() >= 0.0 and x.max() <= 1.0
    assert split["train"][1].dtype == np.int64
    assert sorted(np.bincount(split["val"][1])) == [2] * 10  # stratified


def test_fashion_validate_on_test_is_the_seeds_option():
    split = split_fashion(fashion_raw(), fashion_cfg(validate_on_test=True), seed=0)
    np.testing.assert_array_equal(split["val"][0], split["test"][0])
    assert len(split["train"][1]) == 200


def test_fashion_subsample_and_mismatch():
    split = split_fashion(fashion_raw(), fashion_cfg(max_train=100, max_test=20), 0)
    assert len(split["train"][1]) + len(split["val"][1]) == 100 and len(split["test"][1]) == 20
    raw = fashion_raw()
    raw["train_y"] = raw["train_y"][:-1]
    with pytest.raises(DataError, match="fashion_mnist train: 200 images but 199 labels"):
        split_fashion(raw, fashion_cfg(), 0)


def coded_xy(n=200):
    """thoracic_xy with column 0 a shuffled record number and column 1 a code in 1..4."""
    x, y = thoracic_xy(n)
    rng = np.random.default_rng(5)
    x[:, 0] = rng.permutation(n) + 1
    x[:, 1] = rng.choice([1, 2, 3, 4], size=n, p=[0.4, 0.3, 0.25, 0.05])
    return x, y


def test_thoracic_clean_drops_one_hot_encodes_and_keeps_the_rows():
    x, y = coded_xy()
    raw = split_thoracic(x, y, thoracic_cfg(), seed=1)
    clean = split_thoracic(x, y, thoracic_cfg(), seed=1, features=clean_cfg())
    for name in SPLITS:
        np.testing.assert_array_equal(clean[name][1], raw[name][1])  # the same rows and labels
        xs = clean[name][0]
        assert xs.dtype == np.float32 and xs.shape[1] == 17 - 2 + 4  # 4 codes in the train rows
        one_hot = xs[:, :4]
        assert set(np.unique(one_hot)) <= {0.0, 1.0}  # not standardized
        assert (one_hot.sum(axis=1) <= 1).all()
    train = clean["train"][0]
    assert (train[:, :4].sum(axis=1) == 1).all()  # every train row has a seen code
    np.testing.assert_allclose(train[:, 4:].mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(train[:, 4:].std(axis=0), 1, atol=1e-4)
    # the numeric columns are the raw split's columns 2.. (0 dropped, 1 encoded)
    np.testing.assert_allclose(train[:, 4:], raw["train"][0][:, 2:], atol=1e-5)


def test_one_hot_columns_use_the_train_rows_values_only():
    x = np.array([[1.0, 5.0], [2.0, 6.0], [3.0, 7.0]], dtype=np.float32)
    rows = {"train": np.array([0, 1]), "test": np.array([2])}
    cfg = ThoracicFeatures(drop_columns=[], one_hot_columns=[1], standardize=False)
    out = encode_features(x, rows, cfg, "prepare.thoracic_clean")
    np.testing.assert_array_equal(out["train"], [[1, 1, 0], [2, 0, 1]])
    np.testing.assert_array_equal(out["test"], [[3, 0, 0]])  # 7 unseen in train: all 0


def test_a_constant_column_standardizes_to_zero_not_nan():
    x = np.array([[1.0, 4.0], [3.0, 4.0], [5.0, 4.0]], dtype=np.float32)
    rows = {"train": np.array([0, 1, 2])}
    out = encode_features(x, rows, ThoracicFeatures(standardize=True), "prepare.thoracic")
    np.testing.assert_allclose(out["train"][:, 1], 0)
    np.testing.assert_allclose(out["train"][:, 0], [-1.2247449, 0, 1.2247449], rtol=1e-6)


@pytest.mark.parametrize("field", ["drop_columns", "one_hot_columns"])
def test_a_column_outside_the_csv_names_the_key(field):
    x, y = coded_xy()
    features = clean_cfg(**{**RAW_FEATURES, field: [17]})
    with pytest.raises(ConfigError) as err:
        split_thoracic(x, y, thoracic_cfg(), 1, features, "prepare.thoracic_clean")
    assert str(err.value) == (
        f"prepare.thoracic_clean.{field}: column(s) [17] out of range; the CSV has 17 feature"
        " columns (0..16)"
    )
