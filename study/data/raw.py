"""Parsers for the raw files: IDX (Fashion-MNIST) and the ThoracicSurgery CSV.

Each parser validates its input and raises DataError naming the file.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from study.config.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"
# IDX magic: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions.
IDX_UBYTE = 0x08
THORACIC_COLUMNS = 18  # 17 features + the 0/1 one-year-death label


def decompress_if_gzip(raw: bytes, name: str) -> bytes:
    """Return the content of `raw`, gunzipped when it is gzip data."""
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{name}: corrupt gzip data ({exc})") from exc


def parse_idx(content: bytes, name: str, ndim: int) -> np.ndarray:
    """Parse an uncompressed IDX file of unsigned bytes with `ndim` dimensions."""
    if len(content) < 4:
        raise DataError(f"{name}: too short for an IDX header ({len(content)} bytes)")
    zero, dtype, dims = content[:2], content[2], content[3]
    if zero != b"\x00\x00" or dtype != IDX_UBYTE:
        raise DataError(
            f"{name}: bad IDX magic {content[:4].hex()}; expected 0000{IDX_UBYTE:02x}{ndim:02x}"
        )
    if dims != ndim:
        raise DataError(f"{name}: IDX file has {dims} dimensions, expected {ndim}")
    header = 4 + 4 * dims
    if len(content) < header:
        raise DataError(f"{name}: truncated IDX header")
    shape = tuple(int.from_bytes(content[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    expected = header + int(np.prod(shape))
    if len(content) != expected:
        raise DataError(
            f"{name}: truncated or oversized IDX data: header says shape {shape} "
            f"({expected} bytes), file has {len(content)} bytes"
        )
    return np.frombuffer(content, dtype=np.uint8, offset=header).reshape(shape)


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed)."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    return parse_idx(decompress_if_gzip(path.read_bytes(), str(path)), str(path), ndim)


def read_thoracic_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read the headerless ThoracicSurgery CSV: 17 numeric features and a 0/1 label."""
    import pandas as pd  # lazy: training processes never need it

    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        frame = pd.read_csv(path, header=None)
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path}: empty file") from exc
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: not a well-formed CSV ({exc})") from exc
    if frame.shape[1] != THORACIC_COLUMNS:
        raise DataError(
            f"{path}: expected {THORACIC_COLUMNS} columns (17 features + label), "
            f"got {frame.shape[1]}"
        )
    numeric = frame.apply(pd.to_numeric, errors="coerce")
    bad = numeric.isna() & frame.notna() | frame.isna()
    if bad.to_numpy().any():
        row, col = np.argwhere(bad.to_numpy())[0]
        raise DataError(
            f"{path}: non-numeric or empty cell at line {row + 1}, column {col + 1}: "
            f"{frame.iat[row, col]!r}"
        )
    labels = numeric.iloc[:, -1].to_numpy()
    outside = ~np.isin(labels, (0, 1))
    if outside.any():
        row = int(np.argmax(outside))
        raise DataError(f"{path}: label at line {row + 1} is {labels[row]:g}; allowed: 0, 1")
    return numeric.iloc[:, :-1].to_numpy(np.float32), labels.astype(np.int64)
