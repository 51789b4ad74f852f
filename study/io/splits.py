"""The prepared split files, data/prepared/<split>/<dataset>.npz (arrays `x`, `y`): written
by prepare, read by every training, cross-validation and evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from study.config.errors import DataError
from study.config.paths import split_path
from study.io.files import write_atomic


def load_split(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one prepared split file."""
    if not path.is_file():
        raise DataError(f"{path}: prepared split not found; run `dvc repro prepare`")
    with np.load(path) as data:
        return data["x"], data["y"]


def save_split(split: dict[str, tuple[np.ndarray, np.ndarray]], root: Path, dataset: str) -> None:
    """Write the dataset's train/val/test .npz (uncompressed: loads in a fraction of a second).

    The bytes depend on the arrays alone (np.savez dates every zip entry 1980-01-01, zipfile's
    default, not the clock): DVC hashes bytes, and an unchanged dataset must stay unchanged.
    """
    import io

    for name, (x, y) in split.items():
        buf = io.BytesIO()
        np.savez(buf, x=x, y=y)
        write_atomic(split_path(root, name, dataset), buf.getvalue())
