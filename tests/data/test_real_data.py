"""The real files, where this machine has them: pinned checksums, expected shapes, and what
params.yaml says about the thoracic CSV's columns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from study.config.params import load_params
from study.config.paths import REPO_ROOT
from study.data.fetch import fetch_file, sources_for
from study.data.prepare import split_rows, split_thoracic
from study.data.raw import parse_idx, read_thoracic_csv

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
THORACIC_CSV = REPO_ROOT.parent / "shared" / "data" / "ThoraricSurgery.csv"
SHAPES = {
    "train-images-idx3-ubyte.gz": (60000, 28, 28),
    "train-labels-idx1-ubyte.gz": (60000,),
    "t10k-images-idx3-ubyte.gz": (10000, 28, 28),
    "t10k-labels-idx1-ubyte.gz": (10000,),
}
needs_debian = pytest.mark.skipif(
    not DEBIAN.is_dir(), reason=f"no {DEBIAN}: apt-get install dataset-fashion-mnist"
)
needs_thoracic = pytest.mark.skipif(
    not THORACIC_CSV.is_file(), reason=f"no {THORACIC_CSV} (the shared data directory)"
)


@pytest.fixture(scope="module")
def repo_params():
    return load_params()


@needs_debian
def test_debian_fashion_mnist_matches_pinned_checksums(repo_params):
    files = repo_params.fetch.datasets["fashion_mnist"].files
    assert sorted(files) == sorted(SHAPES)
    assert str(DEBIAN) in repo_params.fetch.local_dirs  # where fetch finds it offline
    for name, sha in files.items():
        content = fetch_file(name, sha, sources_for(name, [str(DEBIAN)], []), 5)
        array = parse_idx(content, name, len(SHAPES[name]))
        assert array.shape == SHAPES[name]
        if "labels" in name:
            expected = 6000 if name.startswith("train") else 1000
            assert np.bincount(array).tolist() == [expected] * 10


@pytest.fixture(scope="module")
def thoracic(repo_params, tmp_path_factory) -> tuple[np.ndarray, np.ndarray]:
    sha = repo_params.fetch.datasets["thoracic"].files["ThoraricSurgery.csv"]
    content = fetch_file("ThoraricSurgery.csv", sha, [str(THORACIC_CSV)], 5)
    path = tmp_path_factory.mktemp("thoracic") / "t.csv"
    path.write_bytes(content)
    return read_thoracic_csv(path)


@needs_thoracic
def test_thoracic_csv_matches_checksum_and_counts(thoracic):
    x, y = thoracic
    assert x.shape == (470, 17) and int(y.sum()) == 70


@needs_thoracic
def test_thoracic_columns_are_what_prepare_thoracic_clean_says(repo_params, thoracic):
    """params.yaml: column 0 a record number 1..470, shuffled; column 1 a diagnosis code with
    7 values (dropped and one-hot encoded by prepare.thoracic_clean)."""
    x, y = thoracic
    assert sorted(x[:, 0].astype(int).tolist()) == list(range(1, 471))
    assert len(np.unique(x[:, 1])) == 7
    clean = repo_params.prepare.thoracic_clean
    assert (clean.drop_columns, clean.one_hot_columns) == ([0], [1])
    rows = split_rows(y, repo_params.prepare.thoracic, repo_params.seed)
    assert {k: len(v) for k, v in rows.items()} == {"train": 329, "val": 70, "test": 71}
    split = split_thoracic(x, y, repo_params.prepare.thoracic, repo_params.seed, clean)
    codes = len(np.unique(x[rows["train"], 1]))  # the codes the train rows have
    assert split["train"][0].shape == (329, 17 - 2 + codes)
    assert [int(split[k][1].sum()) for k in ("train", "val", "test")] == [49, 10, 11]
