"""study.training.run: a variant's trainings as MLflow runs, one per seed, each resumable after
a kill - also on another Ray node or host than the one that was killed."""

from __future__ import annotations

import json
import platform
import signal
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import tiny_fashion
from tracking.isolation import STORE, experiment_id

from bench.workspace import pipeline_env
from study.config.paths import REPO_ROOT, split_path
from study.io.splits import RAW_INPUT, RAW_X, RawInput, raw_input_array, save_split
from study.training.backups import LOCK_FILE, STATE_FILE, backup_dir, read_state
from study.training.run import seed_trainings, train_seeds

# train@dropout in a process that SIGKILLs itself once its backup holds `kill_after` epochs
# (in its last callback: the epoch's backup is written, its metrics handed to MLflow), as a
# node that dies mid-training.
KILLED = """
import json, os, signal, sys
from pathlib import Path

import study.training.run as run
from study.config.sections import Mlflow
from study.config.variant import Variant
from study.tracking.store import setup_mlflow
from study.training.progress import EpochProgress

spec = json.loads(sys.argv[1])


class KilledAfter(EpochProgress):
    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if epoch + 1 == spec["kill_after"]:
            os.kill(os.getpid(), signal.SIGKILL)


run.EpochProgress = KilledAfter
mlflow = setup_mlflow(Mlflow(**spec["store"]))
cfg = Variant.model_validate(spec["cfg"])
files = tuple(Path(p) for p in spec["files"])
out = Path(spec["out"])
jobs = run.seed_trainings("dropout", cfg, 42, True, files, out, out / "history.csv")
run.train_seeds(mlflow, jobs, 1, None, 0)
"""


def test_seed_trainings_first_seed_in_the_variants_dir_the_others_below(variant, tmp_path):
    cfg = variant("dropout", seeds=3)
    files = (tmp_path / "train.npz", tmp_path / "val.npz")
    jobs = seed_trainings("dropout", cfg, 42, True, files, tmp_path / "m", tmp_path / "h.csv")
    assert [(j.seed, j.run_name, j.out_dir, j.history_path) for j in jobs] == [
        (42, "dropout", tmp_path / "m", tmp_path / "h.csv"),
        (43, "dropout/seed43", tmp_path / "m" / "seed43", tmp_path / "m/seed43/history.csv"),
        (44, "dropout/seed44", tmp_path / "m" / "seed44", tmp_path / "m/seed44/history.csv"),
    ]
    assert all(j.cfg is cfg and j.split_files == files and j.deterministic for j in jobs)


def tiny_split_files(prepared):
    """Tiny Fashion-MNIST train and val split files as prepare writes them; their paths."""
    train, val = tiny_fashion()
    pixels = RawInput(shape=(28, 28), dtype="uint8", scale=255.0)  # tiny_fashion's scaling
    raw = {RAW_INPUT: raw_input_array(pixels), RAW_X: np.uint8(train[0][:5] * 255)}
    save_split({"train": train, "val": val}, prepared, "fashion_mnist", {"train": raw})
    return tuple(split_path(prepared, s, "fashion_mnist") for s in ("train", "val"))


def assert_same_weights(a, b):
    pairs = zip(*(keras.saving.load_model(p).get_weights() for p in (a, b)), strict=True)
    for x, y in pairs:
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("kill_after", [2, 5], ids=["mid_training", "after_last_epoch"])
def test_a_training_killed_on_one_node_resumes_on_another(
    variant, local_store, tmp_path, monkeypatch, kill_after
):
    """train@dropout SIGKILLed after 2 of 5 epochs on node A (or after the 5th, before its
    models are saved), then rerun on node B (another RAY_NODE_ID, host name, working directory
    and DVC experiment): B resumes A's backup in A's MLflow run (after the 5th: with no
    further epoch), and ends with what an uninterrupted training gives. Meanwhile it leaves
    another seed's dead backup for that seed's next training, and ends a dead one of its own
    seed made under another key (other params or code)."""
    mlflow, client = local_store, local_store.MlflowClient()
    cfg = variant("dropout", epochs=5, batch_size=16, patience=5)
    files = tiny_split_files(tmp_path / "prepared")

    def jobs(out):
        return seed_trainings("dropout", cfg, 42, True, files, out, out / "history.csv")

    full = train_seeds(mlflow, jobs(tmp_path / "full"), 1, None, 0)[0]
    seed42 = tmp_path / ".backup" / "dropout" / "seed42"
    assert not any(seed42.iterdir())  # the finished training's backup is gone

    node_a = tmp_path / "node-a"
    node_a.mkdir()
    spec = {
        "store": STORE.model_dump(),
        "cfg": cfg.model_dump(mode="json", exclude_unset=True),
        "files": [str(p) for p in files],
        "out": str(tmp_path / "killed"),
        "kill_after": kill_after,
    }
    env = pipeline_env(
        PYTHONPATH=str(REPO_ROOT),
        DVC_ROOT=str(tmp_path),  # the project: its store and backups
        RAY_NODE_ID="a" * 56,
        HOSTNAME="node-a",
        DVC_EXP_NAME="on-node-a",
    )
    killed = subprocess.run(
        [sys.executable, "-c", KILLED, json.dumps(spec)],
        cwd=node_a,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (work,) = seed42.iterdir()  # node A's backup: .backup/dropout/seed42/<key>
    state = read_state(work)
    assert sorted(state["snapshots"]) == [str(e) for e in range(1, kill_after + 1)]
    run_id = state["meta"]["run_id"]
    assert client.get_run(run_id).info.status == "RUNNING"  # as a dead node leaves it

    # Other dead backups of the variant: seed 43's (its own run), and seed 42's under a key
    # that no longer matches.
    other_seed, stale = backup_dir("dropout", 43, "k43"), backup_dir("dropout", 42, "stale")
    runs = {}
    for path in (other_seed, stale):
        runs[path] = client.create_run(experiment_id(mlflow)).info.run_id
        path.mkdir(parents=True)
        (path / LOCK_FILE).touch()  # its claim's, as a killed training leaves it
        meta = {"key": path.name, "run_id": runs[path]}
        (path / STATE_FILE).write_text(json.dumps({"meta": meta, "history": {}, "snapshots": {}}))

    node_b = tmp_path / "node-b"
    node_b.mkdir()
    monkeypatch.chdir(node_b)
    monkeypatch.setenv("RAY_NODE_ID", "b" * 56)
    monkeypatch.setenv("HOSTNAME", "node-b")
    monkeypatch.setenv("DVC_EXP_NAME", "on-node-b")
    monkeypatch.setattr(socket, "gethostname", lambda: "node-b")
    monkeypatch.setattr(platform, "node", lambda: "node-b")
    keras.backend.clear_session()  # as in a new process (Keras's layer and optimizer names)
    resumed = train_seeds(mlflow, jobs(tmp_path / "killed"), 1, None, 0)[0]

    assert resumed["run_id"] == run_id != full["run_id"]  # A's run, continued
    assert resumed["key"] == work.name == full["key"]  # where it ran is not in the key
    same = ("best_epoch", "epochs_run", "best_val_loss", "best_val_accuracy", "config")
    assert {k: resumed[k] for k in same} == {k: full[k] for k in same}
    assert resumed["epochs_run"] == 5
    history = (tmp_path / "killed" / "history.csv").read_text()
    assert history == (tmp_path / "full" / "history.csv").read_text()  # every epoch, bit for bit
    for name in ("best.keras", "last.keras"):
        assert_same_weights(tmp_path / "killed" / name, tmp_path / "full" / name)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "dropout"
    assert run.data.tags["dvc_exp_name"] == "on-node-b"  # resumed here
    for metric in ("loss", "val_loss", "accuracy", "val_accuracy"):  # MLflow's curves: all 5
        logged = sorted((m.step, m.value) for m in client.get_metric_history(run_id, metric))
        reference = sorted(
            (m.step, m.value) for m in client.get_metric_history(full["run_id"], metric)
        )
        assert logged == reference and [step for step, _ in logged] == list(range(5)), metric
    assert run.data.metrics["epochs_run"] == 5
    assert not work.exists()

    assert not stale.exists() and client.get_run(runs[stale]).info.status == "KILLED"
    assert other_seed.exists(), "seed 43's backup was discarded"
    assert read_state(other_seed)["meta"]["run_id"] == runs[other_seed]
    assert client.get_run(runs[other_seed]).info.status == "RUNNING"


def test_system_metrics_are_sampled_only_when_asked(variant, local_store, tmp_path, monkeypatch):
    """mlflow.system_metrics_s: MLflow's CPU and memory curves on each training run, sampled
    every that many seconds; none with null. (Sampled every 0.1 s here, so a tiny training
    gets samples; the study samples every 10 s.)"""
    for name in ("SAMPLING_INTERVAL", "SAMPLES_BEFORE_LOGGING"):  # what MLflow's setters set
        monkeypatch.setenv(f"MLFLOW_SYSTEM_METRICS_{name}", "1")  # restored after the test
    mlflow, client = local_store, local_store.MlflowClient()
    cfg = variant("baseline", epochs=3, batch_size=16)
    files = tiny_split_files(tmp_path / "prepared")
    keys = {}
    for interval, out in ((0.1, "sampled"), (None, "plain")):
        jobs = seed_trainings("baseline", cfg, 42, True, files, tmp_path / out, tmp_path / "h.csv")
        run_id = train_seeds(mlflow, jobs, 1, interval, 0)[0]["run_id"]
        keys[interval] = {k for k in client.get_run(run_id).data.metrics if k.startswith("system/")}
    sampled = {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"}
    assert sampled <= keys[0.1]
    assert keys[None] == set()
