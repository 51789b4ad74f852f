"""study.io: atomic writes, content digests, the prepared split files."""

from __future__ import annotations

import hashlib
import zipfile

import numpy as np
import pytest

from study.config.errors import DataError
from study.config.paths import SPLITS, split_path
from study.io.files import file_md5, write_atomic
from study.io.splits import load_split, save_split


def small_split(offset: int = 0) -> dict:
    rng = np.random.default_rng(offset)
    return {
        name: (rng.random((n, 3), dtype=np.float32), np.arange(n, dtype=np.int64) % 2)
        for name, n in zip(SPLITS, (8, 3, 4), strict=True)
    }


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
        assert file_md5(path) == hashlib.md5(content).hexdigest()
    copy = tmp_path / "copy.npz"
    copy.write_bytes(path.read_bytes())
    assert file_md5(copy) == file_md5(path)
