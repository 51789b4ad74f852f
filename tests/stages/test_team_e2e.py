"""Team use, end to end on tiny data: DVC remote, experiments and queues, MLflow server,
MLproject and plots. One committed tiny study is shared by the tests of this module."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import dvc, ran, sh, tiny_params

from bench.workspace import commit, copy_repo, pipeline_env
from tools.mlflow_ui import ui_url

VARIANTS = ["thoracic_bce", "baseline"]
pytestmark = pytest.mark.slow


def client(repo: Path):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")


def runs_named(repo: Path, name: str) -> list:
    c = client(repo)
    exp = c.get_experiment_by_name("keras-regularization")
    return [r for r in c.search_runs([exp.experiment_id]) if r.info.run_name == name]


@pytest.fixture(scope="module")
def study(tmp_path_factory, mirror_module) -> Path:
    """A committed repo (code, params, dvc.lock) whose tiny study has run once."""
    repo = copy_repo(tmp_path_factory.mktemp("team") / "repo")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    (repo / "params.yaml").write_text(yaml.safe_dump(tiny_params(params, mirror_module, VARIANTS)))
    dvc(repo, "repro")
    commit(repo, "tiny study results")
    return repo


def test_remote_push_then_clone_and_pull_needs_no_training(study, tmp_path):
    dvc(study, "remote", "add", "-d", "team", str(tmp_path / "remote"))
    commit(study, "remote")
    dvc(study, "push")
    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(study), str(clone))
    dvc(clone, "pull")
    assert "Data and pipelines are up to date" in dvc(clone, "status")
    assert ran(dvc(clone, "repro")) == []
    for name in VARIANTS:
        assert (clone / "metrics" / f"{name}.json").read_text() == (
            study / "metrics" / f"{name}.json"
        ).read_text()
        assert (clone / "models" / name / "best.keras").is_file()


def test_exp_run_set_param_reruns_one_variant(study):
    out = dvc(study, "exp", "run", "-n", "pat3", "-S", "++variants.baseline.patience=3")
    # crossval@ and seeds@baseline: a variant's params are theirs too (no folds, one seed)
    stages = ["compare", *(f"{s}@baseline" for s in ("crossval", "evaluate", "seeds", "train"))]
    assert ran(out) == stages
    shown = json.loads(dvc(study, "exp", "show", "--json"))
    assert "pat3" in json.dumps(shown)
    assert "variants.baseline.patience" in dvc(study, "params", "diff", "HEAD", "pat3")
    assert "metrics/baseline.json" in dvc(study, "metrics", "diff", "HEAD", "pat3", "--all")
    table = sh(study, sys.executable, "-m", "tools.report", "--exp", "pat3")
    assert "pat3" in table and "baseline" in table and "FINISHED" in table
    (run,) = [r for r in runs_named(study, "baseline") if r.data.tags.get("dvc_exp_name")]
    assert run.data.tags["dvc_exp_name"] == "pat3" and run.info.status == "FINISHED"


def test_queue_two_experiments_in_parallel_into_the_users_store(study):
    before = len(runs_named(study, "baseline"))
    for patience in (4, 5):
        dvc(study, "exp", "run", "--queue", "-n", f"q{patience}", "-S",
            f"++variants.baseline.patience={patience}")  # fmt: skip
    dvc(study, "queue", "start", "-j", "2")
    deadline = time.time() + 600
    while time.time() < deadline:
        status = dvc(study, "queue", "status")
        if "Running" not in status and "Queued" not in status:
            break
        time.sleep(2)
    assert status.count("Success") >= 2, status
    logs = dvc(study, "queue", "logs", "q4") + dvc(study, "queue", "logs", "q5")
    assert "database is locked" not in logs
    runs = runs_named(study, "baseline")
    assert len(runs) == before + 2
    assert {r.data.tags.get("dvc_exp_name") for r in runs} >= {"q4", "q5"}
    assert all(r.info.status == "FINISHED" for r in runs)
    dvc(study, "queue", "stop")


def test_temp_experiment_lands_in_the_users_store(study):
    before = len(runs_named(study, "thoracic_bce"))
    dvc(study, "exp", "run", "--temp", "-n", "tmpexp", "-S", "++variants.thoracic_bce.patience=2")
    runs = runs_named(study, "thoracic_bce")
    assert len(runs) == before + 1
    assert any(r.data.tags.get("dvc_exp_name") == "tmpexp" for r in runs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def test_mlflow_server_team_mode(study, tmp_path):
    import mlflow

    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "artifacts")],
        env=pipeline_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        uri = f"http://127.0.0.1:{port}"
        wait_for_port(port)
        env = pipeline_env(DATA_MIRRORS="", MLFLOW_TRACKING_URI=uri)
        for stage in ("train", "evaluate"):
            sh(study, sys.executable, "-m", f"stages.{stage}", "baseline", env=env)
        c = mlflow.MlflowClient(tracking_uri=uri)
        exp = c.get_experiment_by_name("keras-regularization")
        (run,) = c.search_runs([exp.experiment_id], "attributes.run_name = 'baseline'")
        assert run.info.status == "FINISHED" and "val_loss" in run.data.metrics
        (evaluation,) = c.search_runs([exp.experiment_id], "attributes.run_name = 'baseline/best'")
        assert {"test_loss", "test_accuracy"} <= set(evaluation.data.metrics)
        assert evaluation.data.tags["mlflow.parentRunId"] == run.info.run_id
        models = c.search_logged_models([exp.experiment_id])
        assert {m.name for m in models if m.source_run_id == run.info.run_id} == {"best", "last"}
        (best,) = [m for m in models if m.source_run_id == run.info.run_id and m.name == "best"]
        mlflow.set_tracking_uri(uri)
        assert mlflow.keras.load_model(f"models:/{best.model_id}").count_params() > 0
    finally:
        server.terminate()
        server.wait(timeout=30)
    dvc(study, "checkout", "--force")  # the workspace models were retrained by hand above


def test_mlproject_train_entry_point_carries_pipeline_tags(study):
    uri = f"sqlite:///{study / 'mlflow.db'}"
    before = len(runs_named(study, "thoracic_bce"))
    sh(study, str(Path(sys.executable).parent / "mlflow"), "run", ".", "-e", "train",
       "-P", "variant=thoracic_bce", "--env-manager", "local",
       "--experiment-name", "keras-regularization",
       env=pipeline_env(DATA_MIRRORS="", MLFLOW_TRACKING_URI=uri))  # fmt: skip
    runs = runs_named(study, "thoracic_bce")
    assert len(runs) == before + 1
    newest = max(runs, key=lambda r: r.info.start_time)
    assert newest.info.status == "FINISHED"
    for tag in ("variant", "dataset", "git_commit", "config_hash", "seed", "mlflow_version"):
        assert tag in newest.data.tags
    dvc(study, "checkout", "--force")


def test_mlproject_main_entry_runs_each_variant_in_its_own_nested_run(study, tmp_path):
    """`mlflow run .` (main: dvc repro) exports MLFLOW_RUN_ID; every variant still gets its
    own run, nested under the project's run."""
    repo = tmp_path / "copy"
    shutil.copytree(study, repo, symlinks=True)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for name in VARIANTS:  # every variant retrains
        params["variants"][name]["patience"] = 7  # a value no earlier test ran
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    uri = f"sqlite:///{repo / 'mlflow.db'}"
    out = sh(repo, str(Path(sys.executable).parent / "mlflow"), "run", ".",
             "--env-manager", "local", "--experiment-name", "keras-regularization",
             env=pipeline_env(DATA_MIRRORS="", MLFLOW_TRACKING_URI=uri))  # fmt: skip
    assert sorted(n for n in ran(out) if n.startswith("train@")) == [
        f"train@{v}" for v in sorted(VARIANTS)
    ]
    runs = client(repo).search_runs([client(repo).get_experiment_by_name(
        "keras-regularization").experiment_id])  # fmt: skip
    project = [r for r in runs if r.data.tags.get("mlflow.project.entryPoint") == "main"]
    (project,) = project
    for name in VARIANTS:
        newest = max(runs_named(repo, name), key=lambda r: r.info.start_time)
        assert newest.info.status == "FINISHED"
        assert newest.data.tags["mlflow.parentRunId"] == project.info.run_id
        assert newest.data.params["variant.patience"] == "7"
    assert project.info.status == "FINISHED"


def test_plots_show_renders_html(study):
    dvc(study, "plots", "show")
    html = (study / "dvc_plots" / "index.html").read_text()
    for plot in ("learning_curves_loss", "learning_curves_accuracy", "confusion", "last_vs_best"):
        assert plot in html
    shutil.rmtree(study / "dvc_plots")


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


def test_mlflow_ui_lists_every_variants_run_and_models(study, tmp_path):
    """What `make mlflow-ui` shows: the experiment opens on its training runs, and its
    Models tab lists the best and last model of every variant."""
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{study / 'mlflow.db'}"],
        env=pipeline_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port)
        exp = client(study).get_experiment_by_name("keras-regularization")
        base = f"http://127.0.0.1:{port}"
        runs_page = rendered(ui_url(base, exp.experiment_id), tmp_path / "profile")
        assert "Run Name" in runs_page  # the runs table, not the GenAI overview
        for name in VARIANTS:
            assert name in runs_page, f"run {name} not on the experiment's first page"
        models_page = rendered(ui_url(base, exp.experiment_id, "models"), tmp_path / "profile")
        for name in VARIANTS:  # each logged model row names its source run
            assert models_page.count(f">{name}<") >= 2, f"models of {name} not listed"
        assert ">best<" in models_page and ">last<" in models_page
    finally:
        server.terminate()
        server.wait(timeout=30)
