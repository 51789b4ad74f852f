"""stages.prepare: seeded stratified splits, standardization, cleaned thoracic features,
Fashion-MNIST scaling."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import fashion_arrays, make_mirror, thoracic_rows

from stages.formats import decompress_if_gzip, load_split, split_path
from stages.params import ConfigError
from stages.prepare import (
    FASHION_FILES,
    encode_features,
    prepare,
    save_split,
    split_fashion,
    split_thoracic,
)

RAW_FEATURES = {"drop_columns": [], "one_hot_columns": []}
THORACIC_CFG = {"val_fraction": 0.15, "test_fraction": 0.15, "standardize": True, **RAW_FEATURES}
CLEAN_CFG = {"drop_columns": [0], "one_hot_columns": [1], "standardize": True}


def thoracic_xy(n=200):
    rows = thoracic_rows(n, 0)
    return rows[:, :-1].astype(np.float32), rows[:, -1].astype(np.int64)


def test_thoracic_split_is_stratified_seeded_and_standardized():
    x, y = thoracic_xy()
    split = split_thoracic(x, y, THORACIC_CFG, seed=1)
    sizes = {k: len(v[1]) for k, v in split.items()}
    assert sizes == {"train": 140, "val": 30, "test": 30}
    for _, ys in split.values():  # stratified: each part keeps the positive rate
        assert abs(ys.mean() - y.mean()) < 0.05
    np.testing.assert_allclose(split["train"][0].mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(split["train"][0].std(axis=0), 1, atol=1e-4)
    again = split_thoracic(x, y, THORACIC_CFG, seed=1)
    np.testing.assert_array_equal(again["test"][0], split["test"][0])


def test_thoracic_raw_features_when_standardize_off():
    x, y = thoracic_xy()
    split = split_thoracic(x, y, {**THORACIC_CFG, "standardize": False}, seed=1)
    all_rows = {tuple(r) for r in x.tolist()}
    assert {tuple(r) for r in split["train"][0].tolist()} <= all_rows


@pytest.mark.parametrize(
    ("val", "test", "message"),
    [(0.5, 0.5, "must be < 1"), (0, 0.2, "val_fraction: must be a fraction in"),
     (0.2, 1.2, "test_fraction: must be a fraction in")],
)  # fmt: skip
def test_thoracic_bad_fractions(val, test, message):
    x, y = thoracic_xy()
    with pytest.raises(ConfigError, match=message):
        split_thoracic(x, y, {**THORACIC_CFG, "val_fraction": val, "test_fraction": test}, 1)


FASHION_CFG = {"val_fraction": 0.1, "validate_on_test": False, "max_train": None, "max_test": None}


def fashion_raw():
    (tx, ty), (sx, sy) = fashion_arrays(200, 0), fashion_arrays(50, 1)
    return {"train_x": tx, "train_y": ty, "test_x": sx, "test_y": sy}


def test_fashion_scaled_and_validation_carved_from_train():
    split = split_fashion(fashion_raw(), FASHION_CFG, seed=0)
    assert len(split["train"][1]) == 180 and len(split["val"][1]) == 20
    assert len(split["test"][1]) == 50
    x = split["train"][0]
    assert x.dtype == np.float32 and x.min() >= 0.0 and x.max() <= 1.0
    assert sorted(np.bincount(split["val"][1])) == [2] * 10  # stratified


def test_fashion_validate_on_test_is_the_seeds_option():
    split = split_fashion(fashion_raw(), {**FASHION_CFG, "validate_on_test": True}, seed=0)
    np.testing.assert_array_equal(split["val"][0], split["test"][0])
    assert len(split["train"][1]) == 200


def test_fashion_subsample_and_mismatch():
    split = split_fashion(fashion_raw(), {**FASHION_CFG, "max_train": 100, "max_test": 20}, 0)
    assert len(split["train"][1]) + len(split["val"][1]) == 100 and len(split["test"][1]) == 20
    raw = fashion_raw()
    raw["train_y"] = raw["train_y"][:-1]
    with pytest.raises(ValueError, match="fashion_mnist train: 200 images but 199 labels"):
        split_fashion(raw, FASHION_CFG, 0)


def test_save_and_load_split(tmp_path):
    split = split_fashion(fashion_raw(), FASHION_CFG, seed=0)
    save_split(split, tmp_path, "fashion_mnist")
    x, y = load_split(split_path(tmp_path, "val", "fashion_mnist"))
    np.testing.assert_array_equal(x, split["val"][0])
    np.testing.assert_array_equal(y, split["val"][1])


def coded_xy(n=200):
    """thoracic_xy with column 0 a shuffled record number and column 1 a code in 1..4."""
    x, y = thoracic_xy(n)
    rng = np.random.default_rng(5)
    x[:, 0] = rng.permutation(n) + 1
    x[:, 1] = rng.choice([1, 2, 3, 4], size=n, p=[0.4, 0.3, 0.25, 0.05])
    return x, y


def test_thoracic_clean_drops_one_hot_encodes_and_keeps_the_rows():
    x, y = coded_xy()
    raw = split_thoracic(x, y, THORACIC_CFG, seed=1)
    clean = split_thoracic(x, y, THORACIC_CFG, seed=1, features=CLEAN_CFG)
    for name in ("train", "val", "test"):
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
    cfg = {"drop_columns": [], "one_hot_columns": [1], "standardize": False}
    out = encode_features(x, rows, cfg, "prepare.thoracic_clean")
    np.testing.assert_array_equal(out["train"], [[1, 1, 0], [2, 0, 1]])
    np.testing.assert_array_equal(out["test"], [[3, 0, 0]])  # 7 unseen in train: all 0


@pytest.mark.parametrize("field", ["drop_columns", "one_hot_columns"])
def test_a_column_outside_the_csv_names_the_key(field):
    x, y = coded_xy()
    features = {**CLEAN_CFG, "drop_columns": [], "one_hot_columns": [], field: [17]}
    with pytest.raises(ConfigError, match=rf"prepare.thoracic_clean.{field}: column\(s\) \[17\]"):
        split_thoracic(x, y, THORACIC_CFG, 1, features, "prepare.thoracic_clean")


# Zip entries carry a date with 2 s resolution: writes further apart than that would differ if
# the writer stamped the clock.
ZIP_DATE_RESOLUTION_S = 2
FILES = {"thoracic": ["ThoraricSurgery.csv"], "fashion_mnist": list(FASHION_FILES.values())}
DATASETS = ("thoracic", "thoracic_clean", "fashion_mnist")


def small_params(params: dict, **thoracic) -> dict:
    """params.yaml (prepare validates the whole file) with these prepare settings."""
    p = copy.deepcopy(params)
    p["seed"] = 0
    p["prepare"] = {
        "thoracic": {**THORACIC_CFG, **thoracic},
        "thoracic_clean": CLEAN_CFG,
        "fashion_mnist": FASHION_CFG,
    }
    return p


def raw_dir(tmp_path: Path) -> Path:
    """data/raw as fetch lays it out (decompressed), from the synthetic mirror's files."""
    mirror = make_mirror(tmp_path / "mirror")["dir"]
    raw = tmp_path / "raw"
    for dataset, files in FILES.items():
        (raw / dataset).mkdir(parents=True)
        for name in files:
            src = mirror / name if dataset == "thoracic" else mirror / f"{name}.gz"
            (raw / dataset / name).write_bytes(decompress_if_gzip(src.read_bytes(), name))
    return raw


def prepared_bytes(params: dict, raw: Path, out: Path) -> dict[str, bytes]:
    prepare(params, raw, out)
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.npz"))}


def test_prepare_writes_the_same_bytes_for_the_same_inputs(tmp_path, params):
    """DVC hashes file bytes: a rerun of prepare must not make unchanged data look changed."""
    params = small_params(params)
    raw = raw_dir(tmp_path)
    first = prepared_bytes(params, raw, tmp_path / "a")
    time.sleep(ZIP_DATE_RESOLUTION_S + 0.1)
    assert prepared_bytes(params, raw, tmp_path / "b") == first
    assert sorted(first) == sorted(
        f"{s}/{d}.npz" for s in ("train", "val", "test") for d in DATASETS
    )


def test_a_thoracic_param_change_leaves_fashion_files_byte_identical(tmp_path, params):
    """Each dataset's files depend on its own inputs and params only, so DVC reruns only
    that dataset's variants (thoracic's split fractions are also thoracic_clean's rows)."""
    raw = raw_dir(tmp_path)
    before = prepared_bytes(small_params(params), raw, tmp_path / "out")
    after = prepared_bytes(small_params(params, val_fraction=0.2), raw, tmp_path / "out")
    for name in before:
        assert (after[name] == before[name]) == name.endswith("fashion_mnist.npz"), name


def test_a_thoracic_clean_change_leaves_the_seeds_files_byte_identical(tmp_path, params):
    raw = raw_dir(tmp_path)
    before = prepared_bytes(small_params(params), raw, tmp_path / "out")
    changed = small_params(params)
    changed["prepare"]["thoracic_clean"] = {**CLEAN_CFG, "one_hot_columns": []}
    after = prepared_bytes(changed, raw, tmp_path / "out")
    for name in before:
        assert (after[name] == before[name]) != name.endswith("thoracic_clean.npz"), name


def test_prepare_validates_its_settings_up_front(tmp_path, params):
    bad = small_params(params)
    bad["prepare"]["thoracic_clean"] = {**CLEAN_CFG, "one_hot_columns": [0, 1]}
    with pytest.raises(ConfigError, match=r"^prepare.thoracic_clean.one_hot_columns: column"):
        prepare(bad, tmp_path / "raw-not-read", tmp_path / "out")
