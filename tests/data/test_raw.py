"""study.data.raw: IDX and CSV parsing with one clear error per bad input."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from conftest import idx_bytes, thoracic_rows, write_csv

from study.config.errors import DataError, StageError
from study.data.raw import decompress_if_gzip, parse_idx, read_idx, read_thoracic_csv


def test_parse_idx_roundtrip():
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    np.testing.assert_array_equal(parse_idx(idx_bytes(images), "x", 3), images)


def test_read_idx_gzip(tmp_path):
    labels = np.array([3, 1, 4], dtype=np.uint8)
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(idx_bytes(labels)))
    np.testing.assert_array_equal(read_idx(path, 1), labels)


def test_corrupt_gzip_names_the_file():
    blob = gzip.compress(b"x" * 1000)
    with pytest.raises(DataError, match=r"train\.gz: corrupt gzip data"):
        decompress_if_gzip(blob[:20] + b"\x00" * 10 + blob[30:], "train.gz")


def test_truncated_idx():
    data = idx_bytes(np.zeros((3, 28, 28), dtype=np.uint8))
    with pytest.raises(DataError, match=r"f\.idx: truncated or oversized IDX data"):
        parse_idx(data[:-5], "f.idx", 3)


def test_wrong_magic_and_dimensions():
    data = idx_bytes(np.zeros((3, 28, 28), dtype=np.uint8))
    with pytest.raises(DataError, match="bad IDX magic 00000d03"):
        parse_idx(data[:2] + b"\x0d" + data[3:], "f", 3)
    with pytest.raises(DataError, match="f: IDX file has 3 dimensions, expected 1"):
        parse_idx(data, "f", 1)
    with pytest.raises(DataError, match="too short for an IDX header"):
        parse_idx(b"\x00\x00", "f", 1)


def test_read_thoracic_csv(tmp_path):
    path = tmp_path / "t.csv"
    write_csv(path, thoracic_rows(20, 0))
    x, y = read_thoracic_csv(path)
    assert x.shape == (20, 17) and x.dtype == np.float32
    assert set(y) <= {0, 1}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty file"),
        ("1,2,3\n", "expected 18 columns (17 features + label), got 3"),
        (",".join(["1"] * 17) + ",2\n", "label at line 1 is 2; allowed: 0, 1"),
        (",".join(["1"] * 16) + ",abc,0\n", "non-numeric or empty cell at line 1, column 17"),
        (",".join(["1"] * 16) + ",,0\n", "non-numeric or empty cell at line 1, column 17"),
    ],
)
def test_bad_csv_names_the_file_and_problem(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError) as err:
        read_thoracic_csv(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.gz: file not found$"):
        read_idx(tmp_path / "nope.gz", 1)


def test_read_thoracic_csv_missing_file_is_a_stage_error(tmp_path):
    """A stage reports it as one line (StageError), not a traceback."""
    with pytest.raises(StageError, match=r"t\.csv: file not found$"):
        read_thoracic_csv(tmp_path / "t.csv")
