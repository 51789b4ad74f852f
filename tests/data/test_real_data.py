"""The real files, where this machine has them: pinned checksums and expected shapes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stages.fetch import fetch_file, sources_for
from stages.formats import parse_idx, read_thoracic_csv
from stages.params import REPO_ROOT, load_params

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
SHARED = REPO_ROOT.parent / "shared" / "data"
SHAPES = {
    "train-images-idx3-ubyte.gz": (60000, 28, 28),
    "train-labels-idx1-ubyte.gz": (60000,),
    "t10k-images-idx3-ubyte.gz": (10000, 28, 28),
    "t10k-labels-idx1-ubyte.gz": (10000,),
}


@pytest.mark.skipif(not DEBIAN.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_debian_fashion_mnist_matches_pinned_checksums():
    files = load_params()["fetch"]["datasets"]["fashion_mnist"]["files"]
    for name, sha in files.items():
        content = fetch_file(name, sha, sources_for(name, [str(DEBIAN)], []), 5)
        array = parse_idx(content, name, len(SHAPES[name]))
        assert array.shape == SHAPES[name]
        if name.startswith("train-labels"):
            assert np.bincount(array).tolist() == [6000] * 10


@pytest.mark.skipif(not (SHARED / "ThoraricSurgery.csv").is_file(), reason="no shared data")
def test_thoracic_csv_matches_checksum_and_counts(tmp_path):
    sha = load_params()["fetch"]["datasets"]["thoracic"]["files"]["ThoraricSurgery.csv"]
    content = fetch_file("ThoraricSurgery.csv", sha, [str(SHARED / "ThoraricSurgery.csv")], 5)
    (tmp_path / "t.csv").write_bytes(content)
    x, y = read_thoracic_csv(tmp_path / "t.csv")
    assert x.shape == (470, 17) and int(y.sum()) == 70
