"""The search stage (stages/search.py, study/search/) on the tiny study: its outputs and MLflow
runs as `dvc repro` left them, the searched variant trained and evaluated like any other, an
interrupted search (SIGINT, SIGTERM), and bad search settings.
The two-node cluster tests are in test_search_cluster.py; dvc.yaml's search stages in
tests/stages/test_dvc_yaml.py."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import mlflow
import psutil
import pytest
import ray
import yaml
from conftest import study_copy
from processes import LOOPBACK, listening_ips, ray_processes

import study.search.run as search_run
from bench.workspace import pipeline_env
from stages import search as search_stage
from study.config.cli import run_stage
from study.config.errors import ConfigError, StageError
from study.config.params import load_params, searched_entry
from study.config.raw import read_params

pytestmark = pytest.mark.slow


def store(repo: Path) -> tuple[mlflow.MlflowClient, str]:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    return client, client.get_experiment_by_name("keras-regularization").experiment_id


def search_runs(repo: Path) -> list:
    """The runs of every search: each `search` run, oldest first, then its trials' runs."""
    client, experiment = store(repo)
    runs = client.search_runs([experiment], "tags.stage = 'search'")
    trials = client.search_runs([experiment], "tags.stage = 'search_trial'")
    return sorted(runs, key=lambda r: r.info.start_time) + trials


def test_the_search_wrote_its_best_trial_which_trained_like_any_variant(built_study):
    repo = built_study
    stats = json.loads((repo / "metrics" / "search.json").read_text())
    assert stats["trials"] == 2 and stats["failed"] == 0  # tiny_params: two trials
    assert stats["completed"] + stats["stopped_early"] == stats["trials"]
    assert 0 < stats["best"]["val_accuracy"] <= 1 and stats["rungs"]["epoch_1"] == stats["trials"]
    # best.yaml: a variant entry that resolves like params.yaml's, with the search's dataset
    params = load_params(repo)
    best = yaml.safe_load((repo / "search" / "best.yaml").read_text())
    cfg = params.variant(params.search.variant)
    fields = params.search.variant_fields
    assert cfg.dataset == params.search.dataset == "fashion_mnist"
    assert "epochs" not in best and cfg.epochs == fields.epochs  # merged when it trains
    assert set(params.search.space) - {"learning_rate"} <= set(best)
    assert cfg.optimizer.learning_rate == best["optimizer"]["learning_rate"]
    # the searched variant trained with that config and was evaluated on test
    trained = json.loads((repo / "models" / "searched" / "train.json").read_text())
    assert trained["config"] == cfg.model_dump(mode="json", exclude_unset=True)
    assert trained["epochs_run"] == fields.epochs
    metrics = json.loads((repo / "metrics" / "searched.json").read_text())
    assert 0 <= metrics["best"]["accuracy"] <= 1 and metrics["dataset"] == "fashion_mnist"
    rows = (repo / "reports" / "search_trials.csv").read_text().splitlines()
    assert rows[0].startswith("trial,trial_id,outcome,epochs,") and len(rows) == stats["trials"] + 1
    assert "| trial |" in (repo / "reports" / "search_trials.md").read_text()
    assert (repo / "reports" / "search.png").stat().st_size > 5000
    assert "| searched |" in (repo / "reports" / "compare.md").read_text()


def test_search_and_trial_runs_in_mlflow(built_study):
    repo = built_study
    client, experiment = store(repo)
    parent, *trials = search_runs(repo)
    assert parent.info.status == "FINISHED" and parent.info.run_name == "search"
    assert parent.data.metrics["trials"] == len(trials) == 2
    assert parent.data.params["search.trials"] == "2"
    # The splits, logged by the search before its trials, which link the same datasets.
    datasets = {(d.dataset.name, d.dataset.digest) for d in parent.inputs.dataset_inputs}
    assert len(datasets) == 2
    for run in trials:
        assert {(d.dataset.name, d.dataset.digest) for d in run.inputs.dataset_inputs} == datasets
        tags = run.data.tags
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.run_name == f"search/trial_{int(tags['trial']):02d}"
        assert len(tags["ray_node_id"]) == 56  # hex Ray node id
        epochs = len(client.get_metric_history(run.info.run_id, "val_loss"))
        stopped = tags["asha_stopped"] == "true"
        expected = {"completed": "FINISHED", "stopped_early": "KILLED"}[tags["outcome"]]
        assert run.info.status == expected and stopped == (tags["outcome"] == "stopped_early")
        assert epochs == (1 if stopped else 2)  # grace_period 1, max_epochs 2
        assert run.data.params["variant.epochs"] == "2" and "search.units" in run.data.params
    runs = client.search_runs([experiment], "tags.variant = 'searched'")
    names = sorted(r.info.run_name for r in runs)  # trained, then evaluated on test
    assert names == ["searched", "searched/best", "searched/last"]
    assert all(r.info.status == "FINISHED" for r in runs)


@pytest.fixture(scope="module")
def searchable(built_study, tmp_path_factory) -> Path:
    """A copy of the tiny study to run searches in."""
    return study_copy(built_study, tmp_path_factory.mktemp("search") / "repo")


def stage_ray(marker: str) -> list[psutil.Process]:
    """The Ray processes the stage started with RAY_TMPDIR=marker: not the warm stage server
    (tools/forkserver.py), which has it too when this test's stage started it."""
    return [p for p in ray_processes(marker) if "forkserver" not in " ".join(p.cmdline())]


def alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_an_interrupted_search_leaves_no_ray_process_and_no_running_run(searchable, sig):
    """What DVC runs (tools.prefork, which passes signals on), stopped once a trial runs:
    SIGTERM (`dvc queue kill`, tools.ray_repro's stop), which the stage's handler turns into
    the KeyboardInterrupt Ctrl-C raises, and SIGINT (Ctrl-C, which DVC passes on); from there
    both take the same way out, and the stage exits 128 + the signal's number."""
    repo = searchable
    marker = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # Ray's sockets need a short path
    env = pipeline_env(DATA_MIRRORS="", RAY_TMPDIR=marker)
    cmd = [sys.executable, "-m", "tools.prefork", "stages.search"]
    proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stdout:  # trial progress: Ray runs the first trial
        lines.append(line)
        if " started: " in line:
            break
    started = stage_ray(marker)
    assert any("raylet" in " ".join(p.cmdline()) for p in started), lines
    listening = listening_ips(started)  # the local instance, on 127.0.0.1 only
    assert listening and listening <= LOOPBACK, listening
    proc.send_signal(sig)
    rest, _ = proc.communicate(timeout=90)
    assert proc.returncode == 128 + sig, "".join(lines) + rest
    # The stage returned after ray.shutdown(), which waits for the processes it started.
    _, alive_ = psutil.wait_procs(started, timeout=10)
    assert not [p.pid for p in alive_ if alive(p)]
    assert not stage_ray(marker)
    shutil.rmtree(marker, ignore_errors=True)
    runs = search_runs(repo)
    searches = [r for r in runs if r.data.tags["stage"] == "search"]
    assert searches[-1].info.status == "KILLED"  # this one's run
    assert not [r.info.run_id for r in runs if r.info.status == "RUNNING"]


def fail_if_called(*args, **kwargs):
    raise AssertionError("Ray must not start")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"space": {"units": {"randint": [256, 32]}}}, "search.space.units: low 256 > high 32"),
        ({"space": {"units": {"choice": []}}}, "search.space.units: empty choice list"),
        ({"space": {"unitz": {"choice": [64]}}}, "search.space.unitz: not a searchable field"),
        (
            {"space": {"activation": {"choice": ["relu", "swish2"]}}},
            "search.space.activation: unknown value 'swish2'; allowed: elu, gelu, ",
        ),
        ({"space": {"dropout": {"uniform": [0.0, 1.5]}}}, "search.space.dropout: must be < 1"),
        ({"space": {"units": {"uniform": [16, 64]}}}, "search.space.units: must be an integer"),
        (
            {"space": {"kernel_l2": {"loguniform": [0.0, 1.0e-3]}}},
            "search.space.kernel_l2: loguniform needs low > 0",
        ),
        ({"space": {"depth": {"uniform": [1, 2], "choice": [1]}}}, "search.space.depth: give "),
        ({"variant": "baseline"}, "search.variant: 'baseline' is a key of variants"),
        ({"base": ["nope"]}, "search.base: unknown preset 'nope'"),
        ({"grace_period": 20}, "search.grace_period: 20 > max_epochs 10"),
        ({"variant_fields": {"epochs": 0}}, "search.variant_fields.epochs: must be > 0, got 0"),
        ({"variant_fields": {"dropout": 1.5}}, "search.variant_fields.dropout: must be < 1"),
    ],
)
def test_a_bad_search_setting_fails_in_one_line_naming_it_before_ray_starts(
    params, tmp_path, monkeypatch, capsys, change, message
):
    """Whether params.yaml's validation or the search's own check (check_space: each value
    as a variant field) catches it, the stage says so in one line, before data or Ray."""
    for key, value in change.items():
        if key == "space":
            params["search"]["space"].update(value)
        else:
            params["search"][key] = value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.setattr(search_stage, "load_params", lambda: load_params(tmp_path))
    monkeypatch.setattr(search_run, "start_ray", fail_if_called)
    monkeypatch.setattr(search_run, "load_split", fail_if_called)
    monkeypatch.setattr(search_run, "search_run", fail_if_called)  # its MLflow run
    with pytest.raises(SystemExit) as exited:
        run_stage(search_stage.main)
    err = capsys.readouterr().err
    assert exited.value.code == 1 and err.startswith(f"error: {message}") and err.count("\n") == 1
    assert not ray.is_initialized()


def test_the_searched_variant_needs_the_search_first(tmp_path):
    with pytest.raises(ConfigError, match=re.escape("not found; run `dvc repro search`")):
        searched_entry(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(read_params()))
    params = load_params(tmp_path)  # no search/best.yaml here
    assert params.study_variants()[-1] == params.search.variant == "searched"
    with pytest.raises(ConfigError, match=re.escape(f"{tmp_path}/search/best.yaml: not found")):
        params.variant("searched")
    with pytest.raises(ConfigError, match="unknown variant 'nope'"):
        params.variant("nope")
    assert issubclass(ConfigError, StageError)
