"""The search stage (stages/search.py) on tiny synthetic data: through `dvc repro` with the
searched variant, on Ctrl-C and SIGTERM, and with bad search-space entries.
The two-node cluster tests are in tests/test_search_cluster.py."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow
import psutil
import pytest
import ray
import yaml
from conftest import dvc, ran, tiny_params
from processes import ray_processes

from bench.workspace import commit, copy_repo, pipeline_env
from stages import search as search_stage
from stages.params import REPO_ROOT, ConfigError, StageError, resolve_entry, run_stage
from stages.search_space import search_settings

pytestmark = pytest.mark.slow
SEARCHED = ("search", "train_searched", "crossval_searched", "evaluate_searched")


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory, request):
    """A repo copy of the tiny study (one variant), reproduced up to the searched variant."""
    mirror = request.getfixturevalue("mirror_module")
    repo = copy_repo(tmp_path_factory.mktemp("repo"))
    params = yaml.safe_load((repo / "params.yaml").read_text())
    (repo / "params.yaml").write_text(
        yaml.safe_dump(tiny_params(params, mirror, ["baseline"], search_trials=5))
    )
    commit(repo, "tiny params")
    out = dvc(repo, "repro", "evaluate_searched")
    return repo, out


def store(repo: Path) -> tuple[mlflow.MlflowClient, str]:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    return client, client.get_experiment_by_name("keras-regularization").experiment_id


def search_runs(repo: Path) -> list:
    """The runs of every search: each `search` run, then its trials' runs."""
    client, experiment = store(repo)
    runs = client.search_runs([experiment], "tags.stage = 'search'")
    trials = client.search_runs([experiment], "tags.stage = 'search_trial'")
    return sorted(runs, key=lambda r: r.info.start_time) + trials


def test_repro_runs_the_search_then_the_searched_variant_like_any_other(tiny_repo):
    repo, out = tiny_repo
    assert set(SEARCHED) <= set(ran(out))
    stats = json.loads((repo / "metrics" / "search.json").read_text())
    assert stats["trials"] >= 4 and stats["stopped_early"] >= 1 and stats["failed"] == 0
    assert stats["completed"] + stats["stopped_early"] == stats["trials"]
    assert 0 < stats["best"]["val_accuracy"] <= 1 and stats["rungs"]["epoch_1"] == stats["trials"]
    # best.yaml: a variant entry that resolves like params.yaml's, with the search's dataset
    params = yaml.safe_load((repo / "params.yaml").read_text())
    best = yaml.safe_load((repo / "search" / "best.yaml").read_text())
    cfg = resolve_entry(params, best, "search/best.yaml")
    fields = params["search"]["variant_fields"]
    assert cfg["dataset"] == "fashion_mnist" and best["epochs"] == fields["epochs"]
    assert set(params["search"]["space"]) - {"learning_rate"} <= set(best)
    # the searched variant trained (search.variant_fields' epochs) and evaluated on test
    trained = json.loads((repo / "models" / "searched" / "train.json").read_text())
    assert trained["epochs_run"] == fields["epochs"]
    assert trained["depth"] == best["depth"] and trained["activation"] == best["activation"]
    metrics = json.loads((repo / "metrics" / "searched.json").read_text())
    assert 0 <= metrics["best"]["accuracy"] <= 1
    rows = (repo / "reports" / "search_trials.csv").read_text().splitlines()
    assert rows[0].startswith("trial,trial_id,outcome,epochs,") and len(rows) == stats["trials"] + 1
    assert "| trial |" in (repo / "reports" / "search_trials.md").read_text()
    assert (repo / "reports" / "search.png").stat().st_size > 5000


def test_search_and_trial_runs_in_mlflow(tiny_repo):
    repo, _ = tiny_repo
    client, _ = store(repo)
    parent, *trials = search_runs(repo)
    assert parent.info.status == "FINISHED" and parent.info.run_name == "search"
    assert parent.data.metrics["trials"] == len(trials)
    assert parent.data.params["search.trials"] == "5"
    stats = json.loads((repo / "metrics" / "search.json").read_text())
    for run in trials:
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
    assert sum(r.data.tags["asha_stopped"] == "true" for r in trials) == stats["stopped_early"]
    runs = client.search_runs([parent.info.experiment_id], "tags.variant = 'searched'")
    names = sorted(r.info.run_name for r in runs)  # trained, then evaluated on test
    assert names == ["searched", "searched/best", "searched/last"]
    assert all(r.info.status == "FINISHED" for r in runs)


def test_changing_another_variant_leaves_the_search_and_searched_variant_up_to_date(tiny_repo):
    repo, _ = tiny_repo
    params_path = repo / "params.yaml"
    before = params_path.read_text()
    params = yaml.safe_load(before)
    params["variants"]["baseline"]["patience"] = 3
    params_path.write_text(yaml.safe_dump(params))
    try:
        stale = json.loads(dvc(repo, "status", "--json", *SEARCHED))
        assert stale == {}, stale
        params["search"]["trials"] = 6
        params_path.write_text(yaml.safe_dump(params))
        stale = json.loads(dvc(repo, "status", "--json", *SEARCHED))
        assert set(stale) == {"search"}, stale  # the others wait for a new best.yaml
    finally:
        params_path.write_text(before)


def test_dvc_graph_of_the_search_and_the_searched_variant():
    """train_searched and crossval_searched read search/best.yaml; the search reads no
    variant; evaluate_searched reads the searched variant's models."""
    from dvc.repo import Repo

    with Repo(str(REPO_ROOT)) as repo:
        stages = {stage.name: stage for stage in repo.index.stages}

    def deps(name: str) -> tuple[set[str], set[str]]:
        files = {str(d.def_path) for d in stages[name].deps if not hasattr(d, "params")}
        params = {k for d in stages[name].deps if hasattr(d, "params") for k in d.params}
        return files, params

    for name in ("train_searched", "crossval_searched"):
        assert "search/best.yaml" in deps(name)[0], name
        assert not any(key.startswith(("variants", "search")) for key in deps(name)[1]), name
    files, params = deps("search")
    assert "search" in params and not any(key.startswith("variants") for key in params)
    assert "data/prepared/val/fashion_mnist.npz" in files
    assert not any(f.startswith("data/prepared/test/") for f in files)  # never test
    assert "models/searched/train.json" in deps("evaluate_searched")[0]


def cmdline(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except psutil.NoSuchProcess:
        return ""


def alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != "zombie"
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_search_leaves_no_ray_process_and_no_running_run(tiny_repo, sig):
    """What DVC runs (tools.prefork, which passes signals on), interrupted once trials run."""
    repo, _ = tiny_repo
    marker = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # Ray's sockets need a short path
    env = pipeline_env(DATA_MIRRORS="", RAY_TMPDIR=marker)
    cmd = [sys.executable, "-m", "tools.prefork", "stages.search"]
    proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stdout:  # trial progress: Ray runs the first trial
        lines.append(line)
        if " started: " in line:
            break
    started = ray_processes(marker)
    assert any("raylet" in cmdline(p) for p in started), lines
    proc.send_signal(sig)
    rest, _ = proc.communicate(timeout=90)
    assert proc.returncode == 128 + sig, "".join(lines) + rest
    deadline = time.monotonic() + 10
    while ray_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not ray_processes(marker)
    assert not [p.pid for p in started if alive(p)]
    runs = search_runs(repo)
    searches = [r for r in runs if r.data.tags["stage"] == "search"]
    assert searches[-1].info.status == "KILLED"  # this one's run
    shutil.rmtree(marker)
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
    params, monkeypatch, capsys, change, message
):
    for key, value in change.items():
        if key == "space":
            params["search"]["space"].update(value)
        else:
            params["search"][key] = value
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        search_settings(params)
    monkeypatch.setattr(search_stage, "load_params", lambda: params)
    monkeypatch.setattr(search_stage, "start_ray", fail_if_called)
    monkeypatch.setattr(search_stage, "load_split", fail_if_called)
    with pytest.raises(SystemExit) as exited:
        run_stage(search_stage.main)
    err = capsys.readouterr().err
    assert exited.value.code == 1 and err.startswith(f"error: {message}") and err.count("\n") == 1
    assert not ray.is_initialized()
    assert issubclass(ConfigError, StageError)


def test_the_searched_variant_needs_the_search_first(params, tmp_path):
    from stages.params import resolve_variant, searched_entry, study_variants

    with pytest.raises(
        ConfigError, match=re.escape("search/best.yaml: not found; run `dvc repro search`")
    ):
        searched_entry(tmp_path)
    assert study_variants(params)[-1] == params["search"]["variant"] == "searched"
    with pytest.raises(ConfigError, match="unknown variant 'nope'"):
        resolve_variant(params, "nope")
