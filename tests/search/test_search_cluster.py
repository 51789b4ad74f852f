"""The search stage on a two-node Ray cluster on 127.0.0.1 (ray.cluster_utils: a head and a
worker node, one CPU each), joined through RAY_ADDRESS; the stage runs in this process and
leaves the cluster running. The tests run in file order: the last one removes the worker
node mid-search (two trials at once: one of them trains there)."""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pytest
import ray
import yaml
from conftest import fashion_arrays

from study.config.params import Params, load_params
from study.search.run import run_search
from study.search.tune import Records

pytestmark = pytest.mark.slow
ENDED = {"FINISHED", "FAILED", "KILLED"}


@pytest.fixture(scope="module")
def cluster():
    """A head and a worker node; Ray's files under a private short RAY_TMPDIR, so that no
    other Ray user on this machine finds this cluster as its latest one."""
    import ray._private.ray_constants as ray_constants
    from ray.cluster_utils import Cluster

    tmp = tempfile.mkdtemp(prefix="rc", dir="/tmp")
    old = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = tmp
    # Every node's address on 127.0.0.1 (else Ray advertises this machine's outward address).
    enabled, ray_constants.ENABLE_RAY_CLUSTER = ray_constants.ENABLE_RAY_CLUSTER, False
    node = {"num_cpus": 1, "node_ip_address": "127.0.0.1"}
    c = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    worker = c.add_node(**node)
    yield c, worker
    c.shutdown()
    ray_constants.ENABLE_RAY_CLUSTER = enabled
    if old is None:
        os.environ.pop("RAY_TMPDIR")
    else:
        os.environ["RAY_TMPDIR"] = old
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """data/prepared/{train,val}/fashion_mnist.npz: 2000 and 200 synthetic images."""
    root = tmp_path_factory.mktemp("search")
    x, y = fashion_arrays(2200, 5)
    x = x.astype(np.float32) / 255
    for split, rows in (("train", slice(0, 2000)), ("val", slice(2000, None))):
        (root / "data" / "prepared" / split).mkdir(parents=True)
        np.savez(root / "data/prepared" / split / "fashion_mnist.npz", x=x[rows], y=y[rows])
    return root


@pytest.fixture
def on_cluster(cluster, data_root, tmp_path, monkeypatch):
    """The stage's environment: the cluster's address, a fresh MLflow store in tmp_path."""
    c, _ = cluster
    for name in ("search", "metrics", "reports"):  # the last test's outputs
        shutil.rmtree(data_root / name, ignore_errors=True)
    monkeypatch.setenv("RAY_ADDRESS", c.address)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))  # MLflow's artifacts
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = os.environ.get("MLFLOW_EXPERIMENT_ID")
    yield data_root
    # The stage's setup_mlflow set MLflow's URI and experiment (and MLFLOW_EXPERIMENT_ID).
    mlflow.set_tracking_uri(None)
    mlflow.tracking.fluent._active_experiment_id = None
    if experiment is None:
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    else:
        os.environ["MLFLOW_EXPERIMENT_ID"] = experiment


def searched(params: dict, root: Path, patience: int = 10, **search) -> Params:
    """params.yaml with a tiny search (and `search` over it), as root/params.yaml."""
    p = copy.deepcopy(params)
    p["train"]["defaults"].update(steps_per_execution=8, patience=patience)
    tiny = {
        "trials": 4, "startup_trials": 2, "max_epochs": 3, "grace_period": 1,
        "reduction_factor": 2, "concurrent": 2, "time_limit_s": 120, "metric": "val_loss",
    }  # fmt: skip
    p["search"].update({**tiny, **search})
    (root / "params.yaml").write_text(yaml.safe_dump(p))
    return load_params(root)


def trial_runs() -> list:
    client = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("keras-regularization").experiment_id
    return client.search_runs([experiment], "tags.stage = 'search_trial'")


def configs(stats: dict) -> list[dict]:
    records = sorted(stats["trial_records"].values(), key=lambda r: r["index"])
    return [r["config"] for r in records]


def test_same_seed_one_trial_at_a_time_proposes_the_same_trials(cluster, on_cluster, params):
    """A random trial, then TPE's: the same proposals and ASHA decisions both times. Each
    trial's MLflow run ends as its outcome says (ASHA's stops: KILLED after one epoch)."""
    c, worker = cluster
    p = searched(params, on_cluster, trials=2, startup_trials=1, concurrent=1, max_epochs=2)
    stats = run_search(p, on_cluster)
    first = configs(stats)
    assert not ray.is_initialized()  # disconnected from the cluster, which still runs
    assert c.head_node.any_processes_alive() and worker.any_processes_alive()
    runs = trial_runs()
    second = configs(run_search(p, on_cluster))
    assert len(first) == 2 and first == second
    assert len({str(config) for config in first}) == 2
    assert (on_cluster / "search" / "best.yaml").is_file()
    assert stats["stopped_early"] >= 1 and stats["completed"] >= 1  # with these seeds
    assert stats["completed"] + stats["stopped_early"] == 2 and len(runs) == 2
    client = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    for run in runs:
        tags = run.data.tags
        stopped = tags["outcome"] == "stopped_early"
        assert tags["asha_stopped"] == str(stopped).lower()
        assert run.info.status == ("KILLED" if stopped else "FINISHED")
        epochs = len(client.get_metric_history(run.info.run_id, "val_loss"))
        assert epochs == (1 if stopped else 2)  # grace_period 1, max_epochs 2
    assert sum(r.data.tags["asha_stopped"] == "true" for r in runs) == stats["stopped_early"]


def test_a_search_survives_losing_the_worker_node(cluster, on_cluster, params, monkeypatch):
    """Two trials at once, one per node (10 epochs, no ASHA or early stop); the worker node is
    removed as soon as the driver gets an epoch of the trial training there: Ray runs that
    trial again on the head, and its lost run ends KILLED."""
    c, worker = cluster
    epochs = 10
    p = searched(
        params, on_cluster, patience=epochs, trials=2, max_epochs=epochs, grace_period=epochs,
        max_failures=3,
    )  # fmt: skip
    lost: dict = {}
    on_result = Records.on_trial_result

    def remove_worker_once_a_trial_trains_there(self, iteration, trials, trial, result, **info):
        on_result(self, iteration, trials, trial, result, **info)
        if not lost and result.get("node_id") == worker.node_id:
            client = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
            experiment = client.get_experiment_by_name("keras-regularization").experiment_id
            (run,) = client.search_runs([experiment], f"tags.trial_id = '{trial.trial_id}'")
            lost.update(run=run.info.run_id, status=run.info.status)
            c.remove_node(worker, allow_graceful=False)

    monkeypatch.setattr(Records, "on_trial_result", remove_worker_once_a_trial_trains_there)
    stats = run_search(p, on_cluster)
    assert lost.get("status") == "RUNNING", "no trial was training on the worker node"
    assert stats["trials"] == 2 and stats["failed"] == 0 and stats["completed"] == 2
    retried = [r for r in stats["trial_records"].values() if r["attempts"] > 1]
    assert retried and all(len(r["results"]) == epochs for r in retried)
    runs = trial_runs()
    assert {run.info.status for run in runs} <= ENDED
    # trials ran on both nodes: the lost one on the worker, its second attempt on the head
    assert {r.data.tags["ray_node_id"] for r in runs} == {c.head_node.node_id, worker.node_id}
    by_id = {run.info.run_id: run for run in runs}
    assert by_id[lost["run"]].info.status == "KILLED"
    trial = by_id[lost["run"]].data.tags["trial_id"]
    attempts = [r for r in runs if r.data.tags["trial_id"] == trial]
    assert sorted(r.info.status for r in attempts) == ["FINISHED", "KILLED"]
    again = next(r for r in attempts if r.info.status == "FINISHED")
    assert again.data.tags["ray_node_id"] == c.head_node.node_id
    assert (on_cluster / "search" / "best.yaml").is_file()
