"""Team use, end to end on copies of the tiny study (tests/conftest.py's `study`): a DVC
remote, an MLflow tracking server and its UI, the MLproject entry points and DVC's plots.
Queued experiments: docs/team.md's sweep (tests/docs/test_docs.py). `mlflow run .` runs in
test_pipeline_e2e.py's killed-training test, whose next `dvc repro` it is."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import mlflow
import pytest
import yaml
from conftest import dvc, sh
from servers import mlflow_server

from bench.workspace import commit, dvc_bin, pipeline_env
from study.config.paths import REPO_ROOT
from tools.mlflow_ui import ui_url

pytestmark = pytest.mark.slow
EXPERIMENT = "keras-regularization"


def client(uri: str) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=uri)


def local_store(repo: Path) -> str:
    return f"sqlite:///{repo / 'mlflow.db'}"


def runs_named(uri: str, name: str) -> list:
    c = client(uri)
    exp = c.get_experiment_by_name(EXPERIMENT)
    return c.search_runs([exp.experiment_id], f"attributes.run_name = '{name}'")


def test_mlproject_entry_points_are_the_stages():
    """MLproject mirrors stages/: one entry point per stage module, its command the dvc.yaml
    stage's (the warm runner included), a `variant` parameter where the stage takes one
    (train, evaluate, crossval: `${key}` or `${item}` in dvc.yaml), `main` runs the pipeline."""
    entries = yaml.safe_load((REPO_ROOT / "MLproject").read_text())["entry_points"]
    assert entries.pop("main") == {"command": "dvc repro"}
    modules = {p.stem: p.read_text() for p in (REPO_ROOT / "stages").glob("[a-z]*.py")}
    assert set(entries) == set(modules)
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    commands = {stage.get("do", stage)["cmd"] for stage in stages.values()}
    for name, entry in entries.items():
        takes_variant = "name_arg(" in modules[name]
        as_dvc = {entry["command"].replace("{variant}", v) for v in ("${key}", "${item}")}
        assert as_dvc & commands, (name, entry["command"])
        assert entry["command"].endswith(f"stages.{name}" + (" {variant}" if takes_variant else ""))
        assert entry.get("parameters", {}) == ({"variant": "string"} if takes_variant else {})
    assert {n for n, e in entries.items() if "parameters" in e} == {"train", "evaluate", "crossval"}


def test_remote_push_then_a_clone_pulls_without_training_and_shows_the_plots(study, tmp_path):
    dvc(study, "remote", "add", "-d", "team", str(tmp_path / "remote"))
    commit(study, "remote")
    dvc(study, "push")
    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(study), str(clone))
    dvc(clone, "pull")
    assert "Data and pipelines are up to date" in dvc(clone, "status")
    for name in ("thoracic_bce", "baseline", "dropout", "searched"):
        assert (clone / "metrics" / f"{name}.json").read_bytes() == (
            study / "metrics" / f"{name}.json"
        ).read_bytes()
        assert (clone / "models" / name / "best.keras").is_file()
    # `dvc plots show` in the clone: each variant's loss curves and confusion matrix, and the
    # charts, each with its data (a definition DVC cannot read is an error there, no chart).
    proc = subprocess.run(
        [dvc_bin(), "plots", "show", "--json"], cwd=clone, env=pipeline_env(DATA_MIRRORS=""),
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    shown = json.loads(proc.stdout)
    assert not shown.get("errors"), shown["errors"]
    values = {
        plot: [len(chart["content"]["data"]["values"]) for chart in charts]
        for plot, charts in shown["data"].items()
    }
    variants = ("thoracic_bce", "baseline", "dropout", "searched")
    files = [f"plots/{kind}/{v}.csv" for kind in ("history", "confusion") for v in variants]
    curves = [f"dvc.yaml::plots/history/{v}.csv" for v in variants]  # the top-level plot's
    assert sorted(values) == sorted([*files, *curves, "last_vs_best", "search_trials"])
    assert all(counts and all(counts) for counts in values.values()), values
    epochs = len((clone / "plots/history/baseline.csv").read_text().splitlines()) - 1
    assert values["plots/history/baseline.csv"] == [epochs]  # val_accuracy
    assert values["dvc.yaml::plots/history/baseline.csv"] == [2 * epochs]  # loss, val_loss
    dvc(clone, "plots", "show")
    assert (clone / "dvc_plots" / "index.html").is_file()


CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--virtual-time-budget=20000",
]  # fmt: skip


def rendered(url: str, profile: Path) -> str:
    """The page's DOM after its scripts ran, from Debian's headless Chromium."""
    proc = subprocess.run(
        [shutil.which("chromium") or "/usr/bin/chromium", *CHROMIUM_FLAGS,
         f"--user-data-dir={profile}", "--dump-dom", url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_the_local_ui_shows_the_runs_their_models_and_a_training_runs_datasets(study, tmp_path):
    """`make mlflow-ui` on the study's own store: the experiment opens on its training runs;
    its Models tab lists each training's best and last model with its source run; a training
    run lists its split files as datasets, their digests the md5s dvc.lock records for
    prepare's outputs. (The champion in the UI: test_registry_ui.py; the tiny study's
    validation is too small for any candidate to beat the softmax regression, so it has none.
    A team server's UI: the same pages, tests/tracking/test_team_server.py's store.)"""
    uri = local_store(study)
    (run,) = runs_named(uri, "dropout")
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"fashion_mnist/train", "fashion_mnist/val"}
    lock = yaml.safe_load((study / "dvc.lock").read_text())
    md5 = {out["path"]: out["md5"] for out in lock["stages"]["prepare"]["outs"]}
    for split, context in (("train", "training"), ("val", "validation")):
        found = inputs[f"fashion_mnist/{split}"]
        assert found.dataset.digest == md5[f"data/prepared/{split}/fashion_mnist.npz"]
        assert [t.value for t in found.tags] == [context]

    store = ["--backend-store-uri", uri, "--artifacts-destination", str(tmp_path / "art")]
    with mlflow_server(*store) as base:
        exp_id = run.info.experiment_id
        runs_page = rendered(ui_url(base, exp_id), tmp_path / "profile")
        assert "Run Name" in runs_page  # the runs table, not the GenAI overview
        assert "dropout/seed43" in runs_page
        models_page = rendered(ui_url(base, exp_id, "models"), tmp_path / "profile")
        assert models_page.count(">dropout<") >= 2 and models_page.count(">dropout/seed43<") >= 2
        assert ">best<" in models_page and ">last<" in models_page
        run_url = f"{base}/#/experiments/{exp_id}/runs/{run.info.run_id}"
        run_page = rendered(run_url, tmp_path / "profile")
        # The Datasets panel: the first dataset by name and digest, the other behind "+1".
        train_md5 = md5["data/prepared/train/fashion_mnist.npz"]
        assert "fashion_mnist/train" in run_page
        assert train_md5 in run_page and ">training<" in run_page
