"""study.tracking.tags: what a run records to be reproduced (code, data, seed, versions)."""

from __future__ import annotations

import subprocess

import pytest

from bench.workspace import commit
from study.config.params import load_params
from study.tracking.tags import config_hash, flat_config, git_state, project_run_id, run_tags


@pytest.fixture(scope="module")
def study_params():
    return load_params()


def test_config_hash_ignores_key_order():
    assert config_hash({"a": 1, "b": {"c": 2}}) == config_hash({"b": {"c": 2}, "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_run_tags_pin_code_data_seed_and_versions(study_params, tmp_path, monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "exp-123")
    data = tmp_path / "train" / "fashion_mnist.npz"
    data.parent.mkdir()
    data.write_bytes(b"abc")
    cfg = study_params.variant("dropout")
    tags = run_tags("dropout", cfg, 43, True, [data])
    assert tags["variant"] == "dropout" and tags["dataset"] == "fashion_mnist"
    assert tags["dvc_exp_name"] == "exp-123"
    assert tags["seed"] == "43" and tags["deterministic"] == "True"
    assert tags["config_hash"] == config_hash(cfg.model_dump(mode="json", exclude_unset=True))
    assert tags["data_md5.train/fashion_mnist.npz"] == (
        "900150983cd24fb0d6963f7d28e17f72"  # md5("abc"): what dvc.lock records for the file
    )
    assert len(tags["git_commit"]) == 40 and tags["git_dirty"] in ("true", "false")
    for lib in ("tensorflow", "keras", "mlflow", "dvc", "python"):
        assert tags[f"{lib}_version"][0].isdigit()


def test_flat_config_for_mlflow_params(study_params):
    cfg = study_params.variant("adam_beta").model_dump(mode="json", exclude_unset=True)
    flat = flat_config(cfg)
    assert flat["variant.optimizer.beta_1"] == "0.89" and flat["variant.units"] == "64"
    assert flat["variant.lr_schedule"] == "None" and "variant.optimizer" not in flat


def test_project_run_id_is_taken_out_of_the_environment(monkeypatch):
    monkeypatch.setenv("MLFLOW_RUN_ID", "abc")  # set by `mlflow run` for the project's run
    assert project_run_id() == "abc"
    assert project_run_id() is None  # the stage's own runs nest under it, not reuse it


def test_git_dirty_counts_source_files_not_what_a_repro_writes(tmp_path):
    written = ["dvc.lock", "metrics/v.json", "plots/history/v.csv", "reports/compare.md"]
    for name in [*written, "search/best.yaml", "params.yaml"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("a: 1\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    commit(tmp_path, "init")
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True
    ).stdout.strip()
    for name in [*written, "search/best.yaml"]:  # what `dvc repro` rewrites as it goes
        (tmp_path / name).write_text("a: 2\n")
    assert git_state(tmp_path) == (head, False)
    (tmp_path / "params.yaml").write_text("a: 2\n")
    assert git_state(tmp_path) == (head, True)
    assert git_state(tmp_path / "not-a-repo") == ("unknown", False)
