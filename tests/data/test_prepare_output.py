"""study.data.prepare.prepare and stages/prepare.py: one file per split and dataset from
data/raw, the same bytes for the same inputs, each dataset's files changed by its own params
only, a missing raw file named, the stage's settings validated before any data is read. The
splits themselves: test_prepare."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from prepare_settings import prepare_cfg
from stage_checkout import run_module, stage_repo

from study.config.errors import DataError
from study.config.paths import SPLITS, split_path
from study.config.sections import Prepare
from study.data.prepare import FASHION_FILES, prepare
from study.data.raw import decompress_if_gzip
from study.io.splits import load_split

FILES = {"thoracic": ["ThoraricSurgery.csv"], "fashion_mnist": list(FASHION_FILES.values())}
DATASETS = ("thoracic", "thoracic_clean", "fashion_mnist")


@pytest.fixture(scope="module")
def raw(mirror_module, tmp_path_factory) -> Path:
    """data/raw as fetch lays it out (decompressed), from the synthetic mirror's files."""
    raw = tmp_path_factory.mktemp("raw")
    for dataset, files in FILES.items():
        (raw / dataset).mkdir(parents=True)
        for name in files:
            gz = "" if dataset == "thoracic" else ".gz"
            content = (mirror_module["dir"] / f"{name}{gz}").read_bytes()
            (raw / dataset / name).write_bytes(decompress_if_gzip(content, name))
    return raw


def prepared_bytes(cfg: Prepare, raw: Path, out: Path) -> dict[str, bytes]:
    prepare(cfg, 0, raw, out)
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.npz"))}


@pytest.fixture(scope="module")
def prepared(raw, tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    """prepare's output with the default settings, once for the module."""
    out = tmp_path_factory.mktemp("prepared")
    return out, prepared_bytes(prepare_cfg(), raw, out)


def test_prepare_writes_every_split_of_every_dataset(prepared, mirror_module):
    out, files = prepared
    assert sorted(files) == sorted(f"{s}/{d}.npz" for s in SPLITS for d in DATASETS)
    sizes = {d: sum(len(load_split(split_path(out, s, d))[1]) for s in SPLITS) for d in DATASETS}
    assert sizes == {"thoracic": 140, "thoracic_clean": 140, "fashion_mnist": 400}  # the mirror's
    for split in SPLITS:  # the same rows in both thoracic datasets
        thoracic, clean = (load_split(split_path(out, split, d)) for d in DATASETS[:2])
        np.testing.assert_array_equal(thoracic[1], clean[1])


def test_prepare_writes_the_same_bytes_for_the_same_inputs(prepared, raw, tmp_path):
    """DVC hashes file bytes: a rerun of prepare must not make unchanged data look changed
    (the split files' zip dates are fixed: test_formats)."""
    assert prepared_bytes(prepare_cfg(), raw, tmp_path / "again") == prepared[1]


def test_a_thoracic_param_change_leaves_fashion_files_byte_identical(prepared, raw, tmp_path):
    """Each dataset's files depend on its own inputs and params only, so DVC reruns only
    that dataset's variants (thoracic's split fractions are also thoracic_clean's rows)."""
    before = prepared[1]
    after = prepared_bytes(prepare_cfg(thoracic={"val_fraction": 0.2}), raw, tmp_path / "out")
    for name in before:
        assert (after[name] == before[name]) == name.endswith("fashion_mnist.npz"), name


def test_a_thoracic_clean_change_leaves_the_seeds_files_byte_identical(prepared, raw, tmp_path):
    before = prepared[1]
    after = prepared_bytes(prepare_cfg(clean={"one_hot_columns": []}), raw, tmp_path / "out")
    for name in before:
        assert (after[name] == before[name]) != name.endswith("thoracic_clean.npz"), name


def test_a_missing_raw_file_names_it(raw, tmp_path):
    with pytest.raises(DataError, match=r"thoracic/ThoraricSurgery\.csv: file not found$"):
        prepare(prepare_cfg(), 0, tmp_path / "no-raw", tmp_path / "out")


def test_the_prepare_stage_validates_its_settings_before_reading_data(params, tmp_path):
    """`python -m stages.prepare` validates the whole params.yaml first: a bad setting is one
    error line, before any data is read (there is none here) or written."""
    params["prepare"]["thoracic_clean"]["one_hot_columns"] = [0, 1]  # 0 is dropped
    repo = stage_repo(tmp_path / "repo", params)
    proc = run_module(repo, "stages.prepare", cwd=repo)
    assert proc.returncode == 1
    assert proc.stderr == (
        "error: prepare.thoracic_clean.one_hot_columns: column(s) 0 also in drop_columns\n"
    )
    assert not (repo / "data").exists()
