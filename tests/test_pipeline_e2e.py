"""End to end: `dvc repro` in a temporary copy of the repo on tiny synthetic data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import tiny_params

from stages.params import REPO_ROOT

VARIANTS = ["thoracic_cce", "baseline", "dropout"]
pytestmark = pytest.mark.slow


def copy_repo(dest: Path) -> Path:
    """Git-tracked files and new stage modules of this checkout (with edits), as a fresh repo."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    tracked = set(
        subprocess.run(
            ["git", "ls-files", "--cached"], cwd=REPO_ROOT, capture_output=True, text=True
        ).stdout.split()
    )
    for name in files:
        src = REPO_ROOT / name
        keep = name in tracked or name.startswith("stages/")  # never outputs of a local run
        if keep and src.is_file() and not name.startswith("tests/"):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], cwd=dest, check=True)
    subprocess.run([*git, "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-qm", "copy"], cwd=dest, check=True)
    return dest


def pipeline_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
        DVC_NO_ANALYTICS="1",
        MLFLOW_DISABLE_TELEMETRY="true",
        TF_CPP_MIN_LOG_LEVEL="2",
        DATA_MIRRORS="",
    )
    env.update(extra)
    return env


def dvc(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dvc"), *args],
        cwd=repo,
        env=env or pipeline_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory, request):
    """A repo copy whose params run three variants for 2 epochs on synthetic data."""
    mirror_fixture = request.getfixturevalue("mirror_module")
    repo = copy_repo(tmp_path_factory.mktemp("repo"))
    params = yaml.safe_load((repo / "params.yaml").read_text())
    (repo / "params.yaml").write_text(yaml.safe_dump(tiny_params(params, mirror_fixture, VARIANTS)))
    subprocess.run(["git", "commit", "-qam", "tiny params"], cwd=repo, check=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"})  # fmt: skip
    out = dvc(repo, "repro")
    return repo, out


def test_repro_writes_metrics_for_every_variant(tiny_repo):
    repo, out = tiny_repo
    for name in VARIANTS:
        assert f"Running stage 'train@{name}'" in out
        metrics = json.loads((repo / "metrics" / f"{name}.json").read_text())
        for which in ("last", "best"):
            assert 0.0 <= metrics[which]["accuracy"] <= 1.0 and metrics[which]["loss"] > 0
        assert 1 <= metrics["best_epoch"] <= metrics["epochs_run"] <= 2
        assert (repo / "models" / name / "best.keras").is_file()
        assert (repo / "plots" / "history" / f"{name}.csv").is_file()
    assert "auc" in json.loads((repo / "metrics" / "thoracic_cce.json").read_text())["best"]
    report = (repo / "reports" / "compare.md").read_text()
    assert all(f"| {name} |" in report for name in VARIANTS)
    assert (repo / "reports" / "compare.png").stat().st_size > 1000


def test_one_named_finished_run_per_variant_in_sqlite(tiny_repo):
    import mlflow

    repo, _ = tiny_repo
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("keras-regularization")
    runs = client.search_runs([exp.experiment_id])
    by_name = {}
    for run in runs:
        by_name.setdefault(run.info.run_name, []).append(run)
    for name in VARIANTS:
        (run,) = by_name[name]
        assert run.info.status == "FINISHED"
        assert run.data.tags["variant"] == name
        for key in ("test_last_accuracy", "test_best_accuracy", "test_last_loss", "val_loss"):
            assert key in run.data.metrics, key
        history = client.get_metric_history(run.info.run_id, "val_loss")
        assert (
            len(history)
            == json.loads((repo / "metrics" / f"{name}.json").read_text())["epochs_run"]
        )
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "models")}
        assert artifacts == {"models/best.keras", "models/last.keras"}
    assert run.info.artifact_uri.startswith(f"file://{repo}/mlartifacts")


def test_second_repro_does_nothing_and_one_change_reruns_one_variant(tiny_repo):
    repo, _ = tiny_repo
    assert "Running stage" not in dvc(repo, "repro")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["variants"]["baseline"]["patience"] = 3
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    out = dvc(repo, "repro")
    ran = sorted(line.split("'")[1] for line in out.splitlines() if "Running stage" in line)
    assert ran == ["compare", "evaluate@baseline", "train@baseline"]
