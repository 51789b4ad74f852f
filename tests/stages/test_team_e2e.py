"""Team use, end to end on copies of the tiny study (tests/conftest.py's `study`): a DVC
remote, queued experiments, an MLflow tracking server and its UI, the MLproject entry points
and DVC's plots. (`mlflow run .` runs in test_pipeline_e2e.py's killed-training test, whose
next `dvc repro` it is.)"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml
from conftest import dvc, ran, sh
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
    """MLproject mirrors stages/: one entry point per stage module, a `variant` parameter
    where the stage takes one (train, evaluate, crossval), `main` runs the whole pipeline."""
    entries = yaml.safe_load((REPO_ROOT / "MLproject").read_text())["entry_points"]
    assert entries.pop("main") == {"command": "dvc repro"}
    modules = {p.stem: p.read_text() for p in (REPO_ROOT / "stages").glob("[a-z]*.py")}
    assert set(entries) == set(modules)
    for name, entry in entries.items():
        takes_variant = "name_arg(" in modules[name]
        expected = f"python -m stages.{name}" + (" {variant}" if takes_variant else "")
        assert entry["command"] == expected, name
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


def test_two_queued_experiments_run_in_parallel_into_the_users_store(study):
    """`dvc exp run --queue -S` twice, then both at once (`--run-all -j 2`, each in a copy
    under .dvc/tmp, as `--temp` runs one): each reruns only the edited variant's stages;
    their MLflow runs land in the workspace's store, tagged with their experiment; DVC and
    tools.report compare the experiments."""
    uri = local_store(study)
    before = len(runs_named(uri, "baseline"))
    for patience in (4, 5):
        # DVC writes 0.00001 as YAML 1.2's `1e-05` (a string to YAML 1.1): read as a number
        dvc(study, "exp", "run", "--queue", "-n", f"q{patience}", "-S",
            f"++variants.baseline.patience={patience}", "-S",
            f"++variants.baseline.kernel_l2=0.0000{patience}")  # fmt: skip
    try:
        dvc(study, "exp", "run", "--run-all", "-j", "2")  # returns once both have run
    finally:
        dvc(study, "queue", "stop")  # its idle worker
    for name in ("q4", "q5"):
        log = dvc(study, "queue", "logs", name)
        assert ran(log) == ["compare", "evaluate@baseline", "train@baseline", "variants"], log
        assert "database is locked" not in log
    runs = runs_named(uri, "baseline")
    assert len(runs) == before + 2 and all(r.info.status == "FINISHED" for r in runs)
    patience = {r.data.tags.get("dvc_exp_name"): r.data.params["variant.patience"] for r in runs}
    assert patience == {None: "10", "q4": "4", "q5": "5"}
    l2 = {r.data.tags.get("dvc_exp_name"): r.data.params.get("variant.kernel_l2") for r in runs}
    assert (l2["q4"], l2["q5"]) == ("4e-05", "5e-05")  # floats, as Python prints them
    baseline = yaml.safe_load((study / "params.yaml").read_text())["variants"]["baseline"]
    assert "patience" not in baseline  # the workspace is left as it was
    assert "variants.baseline.patience" in dvc(study, "params", "diff", "HEAD", "q4")
    table = sh(study, sys.executable, "-m", "tools.report", "--exp", "q4", "--exp", "q5")
    assert "q4" in table and "q5" in table and "baseline" in table and "FINISHED" in table


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


# train and evaluate of one variant in one plain process: no DVC, no warm stage server.
TRAIN_AND_EVALUATE = """
import sys
from stages import evaluate, train
sys.argv = ["stage", sys.argv[1]]
train.main()
evaluate.main()
"""


def test_a_tracking_server_gets_the_runs_and_models_and_its_ui_shows_them(
    study, built_study, tmp_path
):
    """Team mode: the stages log to `mlflow server` (artifacts proxied to its destination);
    retrained by hand in a plain process, dropout's two seeds give the metrics the study's
    forked stage runs wrote, bit for bit; the server's UI lists the runs and models."""
    store = ["--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
             "--artifacts-destination", str(tmp_path / "artifacts")]  # fmt: skip
    with mlflow_server(*store) as uri:
        env = pipeline_env(DATA_MIRRORS="", MLFLOW_TRACKING_URI=uri)
        sh(study, sys.executable, "-c", TRAIN_AND_EVALUATE, "dropout", env=env)
        c = client(uri)
        exp = c.get_experiment_by_name(EXPERIMENT)
        models = c.search_logged_models([exp.experiment_id])
        for name in ("dropout", "dropout/seed43"):
            (run,) = runs_named(uri, name)
            assert run.info.status == "FINISHED" and "val_loss" in run.data.metrics
            (evaluation,) = runs_named(uri, f"{name}/best")
            assert {"test_loss", "test_accuracy"} <= set(evaluation.data.metrics)
            assert evaluation.data.tags["mlflow.parentRunId"] == run.info.run_id
            own = {m.name for m in models if m.source_run_id == run.info.run_id}
            assert own == {"best", "last"}
        (best,) = [m for m in models if m.source_run_id == run.info.run_id and m.name == "best"]
        assert best.artifact_location.startswith("mlflow-artifacts:")  # through the server
        mlflow.set_tracking_uri(uri)
        try:
            assert mlflow.keras.load_model(f"models:/{best.model_id}").count_params() > 0
        finally:
            mlflow.set_tracking_uri(None)

        # What `make mlflow-ui` shows: the experiment opens on its training runs, and its
        # Models tab lists each training's best and last model with its source run.
        runs_page = rendered(ui_url(uri, exp.experiment_id), tmp_path / "profile")
        assert "Run Name" in runs_page  # the runs table, not the GenAI overview
        assert "dropout/seed43" in runs_page
        models_page = rendered(ui_url(uri, exp.experiment_id, "models"), tmp_path / "profile")
        assert models_page.count(">dropout<") >= 2 and models_page.count(">dropout/seed43<") >= 2
        assert ">best<" in models_page and ">last<" in models_page

    metrics = Path("metrics/dropout.json")
    assert (study / metrics).read_bytes() == (built_study / metrics).read_bytes()
    for out in ("models/dropout", "models/dropout/seed43"):
        history = {f.name: f.read_bytes() for f in (study / out).glob("*.csv")}
        assert history == {f.name: f.read_bytes() for f in (built_study / out).glob("*.csv")}
    assert (study / "plots/history/dropout.csv").read_bytes() == (
        built_study / "plots/history/dropout.csv"
    ).read_bytes()


def test_the_local_ui_shows_the_champion_and_a_training_runs_datasets(study, tmp_path):
    """`make mlflow-ui` on the study's own store: a training run lists its split files as
    datasets, their digests the md5s dvc.lock records for prepare's outputs; the UI's page
    shows them. (The champion in the UI: test_registry_ui.py; the tiny study's validation is
    too small for any candidate to beat the softmax regression, so it has none.)"""
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
        run_url = f"{base}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
        run_page = rendered(run_url, tmp_path / "profile")
        # The Datasets panel: the first dataset by name and digest, the other behind "+1".
        train_md5 = md5["data/prepared/train/fashion_mnist.npz"]
        assert "fashion_mnist/train" in run_page
        assert train_md5 in run_page and ">training<" in run_page
