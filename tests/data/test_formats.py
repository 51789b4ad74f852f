"""study.data.formats: IDX and CSV parsing with one clear error per bad input, split files
whose bytes depend on the arrays alone, file digests."""

from __future__ import annotations

import gzip
import hashlib
import zipfile

import numpy as np
import pytest
from conftest import idx_bytes, thoracic_rows, write_csv

from study.config.errors import DataError, StageError
from study.config.paths import SPLITS, split_path
from study.data.formats import (
    decompress_if_gzip,
    file_md5,
    file_sha256,
    load_split,
    parse_idx,
    read_idx,
    read_thoracic_csv,
    save_split,
    write_atomic,
)


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


def test_write_atomic_leaves_no_partial_file(tmp_path):
    target = tmp_path / "out" / "f.bin"
    write_atomic(target, b"abc")
    assert target.read_bytes() == b"abc"

    with pytest.raises(TypeError):
        write_atomic(target, object())  # type: ignore[arg-type]
    assert target.read_bytes() == b"abc"
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.bin"]


def test_load_split_missing_file_says_how_to_fix(tmp_path):
    with pytest.raises(DataError, match="run `dvc repro prepare`"):
        load_split(tmp_path / "nope.npz")


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.gz: file not found$"):
        read_idx(tmp_path / "nope.gz", 1)


def test_read_thoracic_csv_missing_file_is_a_stage_error(tmp_path):
    """A stage reports it as one line (StageError), not a traceback."""
    with pytest.raises(StageError, match=r"t\.csv: file not found$"):
        read_thoracic_csv(tmp_path / "t.csv")


def small_split(offset: int = 0) -> dict:
    rng = np.random.default_rng(offset)
    return {
        name: (rng.random((n, 3), dtype=np.float32), np.arange(n, dtype=np.int64) % 2)
        for name, n in zip(SPLITS, (8, 3, 4), strict=True)
    }


def test_save_split_round_trips_and_its_bytes_depend_on_the_arrays_only(tmp_path):
    """DVC hashes file bytes: rewriting an unchanged dataset must leave them unchanged. np.savez
    dates every zip entry 1980-01-01 (zipfile's default), not the clock."""
    split = small_split()
    save_split(split, tmp_path / "a", "thoracic")
    save_split(split, tmp_path / "b", "thoracic")
    for name, (x, y) in split.items():
        path = split_path(tmp_path / "a", name, "thoracic")
        assert path == tmp_path / "a" / name / "thoracic.npz"
        loaded = load_split(path)
        np.testing.assert_array_equal(loaded[0], x)
        np.testing.assert_array_equal(loaded[1], y)
        assert loaded[0].dtype == np.float32 and loaded[1].dtype == np.int64
        assert path.read_bytes() == split_path(tmp_path / "b", name, "thoracic").read_bytes()
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
        assert [e.filename for e in entries] == ["x.npy", "y.npy"]
        assert {e.date_time for e in entries} == {(1980, 1, 1, 0, 0, 0)}
        assert {e.compress_type for e in entries} == {zipfile.ZIP_STORED}  # loads fast
    save_split(small_split(1), tmp_path / "b", "thoracic")  # other arrays, other bytes
    for name in SPLITS:
        a, b = (split_path(tmp_path / d, name, "thoracic") for d in "ab")
        assert a.read_bytes() != b.read_bytes()


def test_file_digests_follow_the_content(tmp_path):
    path = tmp_path / "f.npz"
    for content in (b"first", b"second, longer", b"third, longer!"):  # a same-size rewrite too
        path.write_bytes(content)
        assert file_sha256(path) == hashlib.sha256(content).hexdigest()
        assert file_md5(path) == hashlib.md5(content).hexdigest()
    copy = tmp_path / "copy.npz"
    copy.write_bytes(path.read_bytes())
    assert file_sha256(copy) == file_sha256(path)
