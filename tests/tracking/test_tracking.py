"""stages.tracking: store location, fail-fast on a dead server, reproducibility tags."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from bench.workspace import pipeline_env
from stages.params import REPO_ROOT, resolve_variant
from stages.tracking import (
    TrackingError,
    check_reachable,
    config_hash,
    git_state,
    run_tags,
    tracking_uri,
)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def test_default_store_is_absolute_sqlite_in_the_users_repo(params, monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    assert tracking_uri(params) == f"sqlite:///{REPO_ROOT / 'mlflow.db'}"
    # during `dvc exp run --temp/--queue` DVC_ROOT names the user's repository
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    assert tracking_uri(params) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri(params) == "http://127.0.0.1:5000"


def test_closed_port_fails_fast_naming_the_uri():
    uri = f"http://127.0.0.1:{closed_port()}"
    start = time.perf_counter()
    with pytest.raises(TrackingError, match=f"MLflow tracking server {uri} .* is not reachable"):
        check_reachable(uri)
    assert time.perf_counter() - start < 5


def test_train_stage_fails_before_training_on_a_dead_server():
    uri = f"http://127.0.0.1:{closed_port()}"
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "stages.train", "baseline"],
        cwd=REPO_ROOT,
        env=pipeline_env(MLFLOW_TRACKING_URI=uri),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert time.perf_counter() - start < 10
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"error: MLflow tracking server {uri}")
    assert "Traceback" not in proc.stderr


def test_unknown_variant_is_one_clear_line():
    proc = subprocess.run(
        [sys.executable, "-m", "stages.train", "nope"],
        cwd=REPO_ROOT,
        env=pipeline_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: variants: unknown variant 'nope'; defined: ")


def test_config_hash_ignores_key_order():
    assert config_hash({"a": 1, "b": {"c": 2}}) == config_hash({"b": {"c": 2}, "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_run_tags_pin_code_data_seed_and_versions(params, tmp_path, monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "exp-123")
    data = tmp_path / "train" / "fashion_mnist.npz"
    data.parent.mkdir()
    data.write_bytes(b"abc")
    tags = run_tags("dropout", resolve_variant(params, "dropout"), params, [data])
    assert tags["variant"] == "dropout" and tags["dataset"] == "fashion_mnist"
    assert tags["dvc_exp_name"] == "exp-123"
    assert tags["seed"] == "42" and tags["deterministic"] == "True"
    assert tags["data_sha256.train/fashion_mnist.npz"] == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert len(tags["git_commit"]) == 40 and tags["git_dirty"] in ("true", "false")
    for lib in ("tensorflow", "keras", "mlflow", "dvc"):
        assert tags[f"{lib}_version"][0].isdigit()


def test_git_dirty_counts_source_files_not_what_a_repro_writes(tmp_path):
    from bench.workspace import commit

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
