"""Raw files -> seeded, stratified train/val/test splits (the prepare stage).

Layout: data/prepared/<split>/<dataset>.npz (arrays `x`, `y`, and the raw examples and their
encoding: study/io/splits.py): a training depends on the train
and val files of its dataset only, an evaluation on its test file, so the test split is visibly
held out and a change to one dataset's preparation reruns only that dataset's variants.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from study.config.errors import ConfigError, DataError
from study.config.sections import Prepare, PrepareFashion, PrepareThoracic, ThoracicFeatures
from study.data.raw import read_idx, read_thoracic_csv
from study.io.splits import (
    EXAMPLE_ROWS,
    RAW_INPUT,
    RAW_X,
    Column,
    RawInput,
    raw_input_array,
    save_split,
)

FASHION_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
PIXEL_MAX = 255.0
# The thoracic datasets' one raw file, under the raw directory (also cross-validation's input).
THORACIC_CSV = Path("thoracic/ThoraricSurgery.csv")
Split = dict[str, tuple[np.ndarray, np.ndarray]]
Extra = dict[str, dict[str, np.ndarray]]  # split -> arrays beside x and y


def split_rows(y: np.ndarray, cfg: PrepareThoracic, seed: int) -> dict[str, np.ndarray]:
    """Row indices of the stratified train/val/test split (every thoracic dataset's rows)."""
    rows = np.arange(len(y))
    rest, test_rows = train_test_split(
        rows, test_size=cfg.test_fraction, stratify=y, random_state=seed
    )
    # An absolute count, so val is `val_fraction` of the whole (a fraction of the rest rounds up).
    train, val_rows = train_test_split(
        rest, test_size=round(cfg.val_fraction * len(y)), stratify=y[rest], random_state=seed
    )
    return {"train": train, "val": val_rows, "test": test_rows}


def encode_features(
    x: np.ndarray, rows: dict[str, np.ndarray], cfg: ThoracicFeatures, key: str
) -> dict[str, np.ndarray]:
    """Each split's float32 features: drop_columns left out, each of one_hot_columns replaced
    by one 0/1 column per value seen in the train rows (an unseen value: all 0), the other
    columns z-scored on the train rows' statistics if standardize (fit_features)."""
    encoding = fit_features(x[rows["train"]], cfg, key)
    return {name: apply_features(x[r], encoding) for name, r in rows.items()}


def fit_features(x_train: np.ndarray, cfg: ThoracicFeatures, key: str) -> RawInput:
    """encode_features' encoding of a raw row, fitted on the raw train rows x_train: the
    models wrap it (study.training.model.raw_input_model), so they take raw rows."""
    for field in ("drop_columns", "one_hot_columns"):
        outside = [c for c in getattr(cfg, field) if c >= x_train.shape[1]]
        if outside:
            raise ConfigError(
                f"{key}.{field}: column(s) {outside} out of range; the CSV has"
                f" {x_train.shape[1]} feature columns (0..{x_train.shape[1] - 1})"
            )
    columns = [
        Column(column=c, values=np.unique(x_train[:, c]).tolist())
        if c in cfg.one_hot_columns
        else Column(column=c)
        for c in range(x_train.shape[1])
        if c not in cfg.drop_columns
    ]
    encoding = RawInput(shape=x_train.shape[1:], dtype=str(x_train.dtype), columns=columns)
    if not cfg.standardize:
        return encoding
    encoded = apply_features(x_train, encoding)
    mean, std = encoded.mean(axis=0), encoded.std(axis=0)
    std[std == 0] = 1.0  # constant columns stay constant (0) instead of NaN
    numeric = _numeric(encoding)
    mean, std = np.where(numeric, mean, 0.0), np.where(numeric, std, 1.0)  # one-hot: as is
    return encoding.model_copy(update={"mean": mean.tolist(), "std": std.tolist()})


def _numeric(encoding: RawInput) -> list[bool]:
    return [
        flag
        for c in encoding.columns
        for flag in ([True] if c.values is None else [False] * len(c.values))
    ]


def apply_features(x: np.ndarray, encoding: RawInput) -> np.ndarray:
    """Raw rows x as fit_features' encoding makes them (float32)."""
    parts = [
        x[:, [c.column]] if c.values is None else x[:, [c.column]] == np.asarray(c.values, x.dtype)
        for c in encoding.columns
    ]
    out = np.hstack(parts).astype(np.float32)
    if encoding.mean is None:
        return out
    mean, std = np.float32(encoding.mean), np.float32(encoding.std)
    return np.where(_numeric(encoding), (out - mean) / std, out)


def split_thoracic(
    x: np.ndarray,
    y: np.ndarray,
    cfg: PrepareThoracic,
    seed: int,
    features: ThoracicFeatures | None = None,
    key: str = "prepare.thoracic",
) -> Split:
    """Stratified train/val/test split by cfg's fractions, with `features` (default: cfg's
    own drop_columns, one_hot_columns, standardize) as encode_features makes them."""
    return prepare_thoracic(x, y, cfg, seed, features, key)[0]


def prepare_thoracic(
    x: np.ndarray,
    y: np.ndarray,
    cfg: PrepareThoracic,
    seed: int,
    features: ThoracicFeatures | None = None,
    key: str = "prepare.thoracic",
) -> tuple[Split, Extra]:
    """split_thoracic's splits, and each split file's raw arrays (save_split's `extra`)."""
    rows = split_rows(y, cfg, seed)
    encoding = fit_features(x[rows["train"]], cfg if features is None else features, key)
    split = {name: (apply_features(x[r], encoding), y[r]) for name, r in rows.items()}
    return split, raw_extra(encoding, x[rows["train"]], x[rows["test"]])


def raw_extra(encoding: RawInput, raw_train: np.ndarray, raw_test: np.ndarray) -> Extra:
    """The raw arrays of the split files: the train file's encoding and first raw examples,
    the test file's raw examples (all)."""
    return {
        "train": {RAW_INPUT: raw_input_array(encoding), RAW_X: raw_train[:EXAMPLE_ROWS]},
        "test": {RAW_X: raw_test},
    }


def _subsample(x: np.ndarray, y: np.ndarray, limit: int | None, seed: int):
    if limit is None or limit >= len(y):
        return x, y
    x, _, y, _ = train_test_split(x, y, train_size=limit, stratify=y, random_state=seed)
    return x, y


def split_fashion(arrays: dict[str, np.ndarray], cfg: PrepareFashion, seed: int) -> Split:
    """Scale pixels to [0, 1] float32; carve a stratified validation split from train."""
    return prepare_fashion(arrays, cfg, seed)[0]


def prepare_fashion(
    arrays: dict[str, np.ndarray], cfg: PrepareFashion, seed: int
) -> tuple[Split, Extra]:
    """split_fashion's splits, and each split file's raw arrays (save_split's `extra`)."""
    for part in ("train", "test"):
        n_x, n_y = len(arrays[f"{part}_x"]), len(arrays[f"{part}_y"])
        if n_x != n_y:
            raise DataError(f"fashion_mnist {part}: {n_x} images but {n_y} labels")
    x, y = _subsample(arrays["train_x"], arrays["train_y"], cfg.max_train, seed)
    x_test, y_test = _subsample(arrays["test_x"], arrays["test_y"], cfg.max_test, seed)
    if cfg.validate_on_test:
        # The seed's setting: model selection sees the test set (optimistic test scores).
        x_train, y_train, x_val, y_val = x, y, x_test, y_test
    else:
        x_train, x_val, y_train, y_val = train_test_split(
            x, y, test_size=cfg.val_fraction, stratify=y, random_state=seed
        )
    encoding = RawInput(shape=x_train.shape[1:], dtype=str(x_train.dtype), scale=PIXEL_MAX)

    def scale(a: np.ndarray) -> np.ndarray:
        return a.astype(np.float32) / np.float32(PIXEL_MAX)

    split = {
        "train": (scale(x_train), y_train.astype(np.int64)),
        "val": (scale(x_val), y_val.astype(np.int64)),
        "test": (scale(x_test), y_test.astype(np.int64)),
    }
    return split, raw_extra(encoding, x_train, x_test)


def prepare(cfg: Prepare, seed: int, raw: Path, out: Path) -> None:
    """Prepare every dataset from raw/ into out/<split>/<dataset>.npz."""
    x, y = read_thoracic_csv(raw / THORACIC_CSV)
    for dataset in ("thoracic", "thoracic_clean"):  # the same rows: prepare.thoracic's split
        features = getattr(cfg, dataset)
        split = prepare_thoracic(x, y, cfg.thoracic, seed, features, f"prepare.{dataset}")
        save_split(split[0], out, dataset, split[1])
    arrays = {
        key: read_idx(raw / "fashion_mnist" / name, 3 if key.endswith("_x") else 1)
        for key, name in FASHION_FILES.items()
    }
    split, extra = prepare_fashion(arrays, cfg.fashion_mnist, seed)
    save_split(split, out, "fashion_mnist", extra)
