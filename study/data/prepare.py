"""Raw files -> seeded, stratified train/val/test splits (the prepare stage).

Layout: data/prepared/<split>/<dataset>.npz (arrays `x`, `y`): a training depends on the train
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
from study.io.splits import save_split

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
    columns z-scored on the train rows' statistics if standardize."""
    for field in ("drop_columns", "one_hot_columns"):
        outside = [c for c in getattr(cfg, field) if c >= x.shape[1]]
        if outside:
            raise ConfigError(
                f"{key}.{field}: column(s) {outside} out of range; the CSV has"
                f" {x.shape[1]} feature columns (0..{x.shape[1] - 1})"
            )
    parts: dict[str, list[np.ndarray]] = {name: [] for name in rows}
    numeric: list[bool] = []
    for col in range(x.shape[1]):
        if col in cfg.drop_columns:
            continue
        values = np.unique(x[rows["train"], col]) if col in cfg.one_hot_columns else None
        for name, r in rows.items():
            column = x[r][:, [col]]
            parts[name].append(column if values is None else column == values)
        numeric += [True] if values is None else [False] * len(values)
    out = {name: np.hstack(cols).astype(np.float32) for name, cols in parts.items()}
    if cfg.standardize:
        mean, std = out["train"].mean(axis=0), out["train"].std(axis=0)
        std[std == 0] = 1.0  # constant columns stay constant (0) instead of NaN
        out = {name: np.where(numeric, (a - mean) / std, a) for name, a in out.items()}
    return out


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
    rows = split_rows(y, cfg, seed)
    xs = encode_features(x, rows, cfg if features is None else features, key)
    return {name: (xs[name], y[r]) for name, r in rows.items()}


def _subsample(x: np.ndarray, y: np.ndarray, limit: int | None, seed: int):
    if limit is None or limit >= len(y):
        return x, y
    x, _, y, _ = train_test_split(x, y, train_size=limit, stratify=y, random_state=seed)
    return x, y


def split_fashion(arrays: dict[str, np.ndarray], cfg: PrepareFashion, seed: int) -> Split:
    """Scale pixels to [0, 1] float32; carve a stratified validation split from train."""
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

    def scale(a: np.ndarray) -> np.ndarray:
        return a.astype(np.float32) / np.float32(PIXEL_MAX)

    return {
        "train": (scale(x_train), y_train.astype(np.int64)),
        "val": (scale(x_val), y_val.astype(np.int64)),
        "test": (scale(x_test), y_test.astype(np.int64)),
    }


def prepare(cfg: Prepare, seed: int, raw: Path, out: Path) -> None:
    """Prepare every dataset from raw/ into out/<split>/<dataset>.npz."""
    x, y = read_thoracic_csv(raw / THORACIC_CSV)
    for dataset in ("thoracic", "thoracic_clean"):  # the same rows: prepare.thoracic's split
        features = getattr(cfg, dataset)
        split = split_thoracic(x, y, cfg.thoracic, seed, features, f"prepare.{dataset}")
        save_split(split, out, dataset)
    arrays = {
        key: read_idx(raw / "fashion_mnist" / name, 3 if key.endswith("_x") else 1)
        for key, name in FASHION_FILES.items()
    }
    save_split(split_fashion(arrays, cfg.fashion_mnist, seed), out, "fashion_mnist")
