"""The prepared split files, data/prepared/<split>/<dataset>.npz (arrays `x`, `y`): written
by prepare, read by every training, cross-validation and evaluation.

Besides the model inputs `x` (preprocessed), a train file holds how a raw example becomes
one (`raw_input`: RawInput as JSON, fitted on the train rows) and a few raw train examples
(`raw_x`); a test file holds every test example raw (`raw_x`). The trainings wrap that
preprocessing into the models they save and log, and evaluate scores them on raw test rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict

from study.config.errors import DataError
from study.config.paths import split_path
from study.io.files import write_atomic

RAW_X, RAW_INPUT = "raw_x", "raw_input"
EXAMPLE_ROWS = 5  # raw train examples kept in the train file (the models' input example)


class Column(BaseModel):
    """One kept raw column, in the model input's order: numeric, or one-hot over `values`
    (the train rows' categories; another value encodes as all 0)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    column: int
    values: list[float] | None = None


class RawInput(BaseModel):
    """How one raw example (`shape`, `dtype`) becomes the model's input: pixels divided by
    `scale`; or table `columns` (the others dropped), then (x - mean) / std per encoded
    column (one-hot columns: mean 0, std 1) when mean and std are given."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    shape: tuple[int, ...]
    dtype: str
    scale: float | None = None
    columns: list[Column] | None = None
    mean: list[float] | None = None
    std: list[float] | None = None


def load_split(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one prepared split file."""
    if not path.is_file():
        raise DataError(f"{path}: prepared split not found; run `dvc repro prepare`")
    with np.load(path) as data:
        return data["x"], data["y"]


def _saved(path: Path, key: str) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: prepared split not found; run `dvc repro prepare`")
    with np.load(path) as data:
        if key not in data:
            raise DataError(f"{path}: no `{key}` (written by an older prepare); rerun prepare")
        return data[key]


def load_raw_x(path: Path) -> np.ndarray:
    """A split file's raw examples (a test file: every row, in the order of its `x`)."""
    return _saved(path, RAW_X)


def load_raw_input(path: Path) -> RawInput:
    """A train file's preprocessing of raw examples."""
    return RawInput.model_validate_json(str(_saved(path, RAW_INPUT)))


def save_split(
    split: dict[str, tuple[np.ndarray, np.ndarray]],
    root: Path,
    dataset: str,
    extra: dict[str, dict[str, np.ndarray]] | None = None,
) -> None:
    """Write the dataset's train/val/test .npz (uncompressed: loads in a fraction of a second),
    with the arrays extra[<split>] (e.g. raw_x) beside x and y.

    The bytes depend on the arrays alone (np.savez dates every zip entry 1980-01-01, zipfile's
    default, not the clock): DVC hashes bytes, and an unchanged dataset must stay unchanged.
    """
    import io

    for name, (x, y) in split.items():
        buf = io.BytesIO()
        np.savez(buf, x=x, y=y, **(extra or {}).get(name, {}))
        write_atomic(split_path(root, name, dataset), buf.getvalue())


def raw_input_array(raw_input: RawInput) -> np.ndarray:
    """raw_input as the train file's `raw_input` array (JSON text: loads without pickle)."""
    return np.asarray(raw_input.model_dump_json(exclude_none=True))
