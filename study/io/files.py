"""The files every stage writes or reads: atomic writes, content digests, and what a metrics
file may hold (study/io/splits.py: the prepared split files)."""

from __future__ import annotations

import functools
import hashlib
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

METRIC_DIGITS = 6  # rounding keeps metrics files stable and readable


def write_atomic(path: Path, content: bytes) -> None:
    """Write via a temp file in the same directory + rename: no half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; data files are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def file_md5(path: Path) -> str:
    """md5 of a file's bytes, what DVC records for it in dvc.lock; read once per content (a
    training hashes its data files for its tags, its resume key and its MLflow datasets)."""
    info = path.stat()
    return _md5(str(path.resolve()), info.st_mtime_ns, info.st_size)


@functools.lru_cache(maxsize=64)
def _md5(path: str, mtime_ns: int, size: int) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def finite(value: Any) -> Any:
    """value with every float rounded to METRIC_DIGITS and every NaN or inf made None,
    in nested dicts and lists too: what a metrics file may hold (valid JSON, stable bytes)."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    if isinstance(value, float | np.floating):
        return round(float(value), METRIC_DIGITS) if math.isfinite(value) else None
    return value
