"""study.training.backups: where a training's backup lives, its resume key, its owner, and
the MLflow run it resumes or ends."""

from __future__ import annotations

import json
import platform
import shutil
import socket

import pytest
from tracking.isolation import experiment_id

import study.training.backups as backups
from study.config.code import module_files
from study.config.errors import StageError
from study.config.paths import REPO_ROOT
from study.training.backups import (
    LOCK_FILE,
    STATE_FILE,
    backup_dir,
    claimed,
    discard_abandoned,
    read_state,
    resume_key,
    resume_or_start,
    tidy,
)


@pytest.fixture
def store(local_store):
    """A client of a tmp store (tmp_path is the project root: the backups go there too), and a
    factory of its runs (RUNNING)."""
    client = local_store.MlflowClient()
    exp = experiment_id(local_store)
    return client, lambda: client.create_run(exp).info.run_id


def write_state(work, key, run_id, snapshots=None):
    """What a killed training leaves: its state and the lock file its claim made."""
    work.mkdir(parents=True, exist_ok=True)
    (work / LOCK_FILE).touch()
    meta = {"key": key, "run_id": run_id}
    state = {"meta": meta, "history": {}, "snapshots": snapshots or {"2": {}}}
    (work / STATE_FILE).write_text(json.dumps(state))


def status(client, run_id):
    return client.get_run(run_id).info.status


def test_backup_resumes_its_mlflow_run_or_is_discarded_and_killed(store, tmp_path):
    client, new_run = store
    run_id = new_run()
    work = tmp_path / "work"
    write_state(work, "k1", run_id)
    # same params, data and code: continue the interrupted run
    assert resume_or_start(client, work, "k1") == run_id
    assert status(client, run_id) == "RUNNING"
    # params, data or code changed since: start over, and the interrupted run ends KILLED
    assert resume_or_start(client, work, "k2") is None
    assert status(client, run_id) == "KILLED"
    assert read_state(work) is None


def test_a_run_of_another_store_or_a_finished_run_is_not_resumed(store, tmp_path):
    client, new_run = store
    work = tmp_path / "work"
    write_state(work, "k", "0123456789abcdef0123456789abcdef")  # not in this store
    assert resume_or_start(client, work, "k") is None and read_state(work) is None
    run_id = new_run()
    client.set_terminated(run_id, "FINISHED")
    write_state(work, "k", run_id)
    assert resume_or_start(client, work, "k") is None
    assert status(client, run_id) == "FINISHED"


@pytest.fixture
def data(tmp_path):
    """A variant's prepared split files (what the key hashes is their bytes)."""
    files = [tmp_path / "prepared" / split / "fashion_mnist.npz" for split in ("train", "val")]
    for i, path in enumerate(files):
        path.parent.mkdir(parents=True)
        path.write_bytes(bytes([i]) * 64)
    return files


def checkout(dest):
    """A copy of the study package at dest/study: a checkout elsewhere, on another machine."""
    shutil.copytree(REPO_ROOT / "study", dest / "study", ignore=shutil.ignore_patterns("__py*"))
    return dest


def code_at(monkeypatch, root):
    """resume_key hashes the training code of the checkout at root."""
    monkeypatch.setattr(backups, "REPO_ROOT", root)
    monkeypatch.setattr(backups, "module_files", lambda module: module_files(module, root))


def test_resume_key_is_what_the_weights_depend_on_not_where_they_run(
    variant, data, tmp_path, monkeypatch
):
    """The same training on another Ray node, host, checkout or tracking setup resumes the
    backup (same key); another config, seed, determinism, data or training code does not."""
    here = checkout(tmp_path / "here")
    code_at(monkeypatch, here)
    cfg = variant("dropout")
    key = resume_key(cfg, 42, True, data)

    # Where and how it runs, and how it is logged: not in the key.
    monkeypatch.setenv("RAY_NODE_ID", "f" * 56)  # set by tools/ray_tasks.py on each node
    monkeypatch.setenv("HOSTNAME", "another-host")
    monkeypatch.setattr(socket, "gethostname", lambda: "another-host")
    monkeypatch.setattr(platform, "node", lambda: "another-host")
    monkeypatch.setenv("DVC_EXP_NAME", "exp-7")
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "another-project"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    there = checkout(tmp_path / "there")  # the same code at another path
    for logging_code in ("tracking/tags.py", "tracking/keras_log.py", "training/run.py"):
        with (there / "study" / logging_code).open("a") as f:
            f.write("\n# logged differently\n")
    code_at(monkeypatch, there)
    assert resume_key(cfg, 42, True, data) == key
    assert resume_key(variant("dropout", seeds=3), 42, True, data) == key  # how many, not which

    # What the weights depend on.
    faster = {**cfg.optimizer.model_dump(exclude_unset=True), "learning_rate": 0.01}
    other = {
        "units": resume_key(variant("dropout", units=32), 42, True, data),
        "epochs": resume_key(variant("dropout", epochs=31), 42, True, data),
        "learning_rate": resume_key(variant("dropout", optimizer=faster), 42, True, data),
        "seed": resume_key(cfg, 43, True, data),
        "deterministic": resume_key(cfg, 42, False, data),
    }
    data[0].write_bytes(b"\x07" * 64)  # same size, other bytes
    other["data"] = resume_key(cfg, 42, True, data)
    data[0].write_bytes(b"\x00" * 64)
    assert resume_key(cfg, 42, True, data) == key
    for module in ("training/fitting.py", "training/batches.py"):  # imported by train.py,
        edited = there / "study" / module  # and by fitting.py
        source = edited.read_text()
        edited.write_text(source + "\n# edited\n")
        other[module] = resume_key(cfg, 42, True, data)
        edited.write_text(source)
    monkeypatch.setattr(backups, "version", lambda lib: "0.0")
    other["library versions"] = resume_key(cfg, 42, True, data)
    assert key not in other.values(), other
    assert len(set(other.values())) == len(other), other


def test_backup_dir_is_in_the_users_repository(monkeypatch, tmp_path):
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))  # as in `dvc exp run --temp/--queue`
    assert backup_dir("dropout", 43, "k") == tmp_path / ".backup" / "dropout" / "seed43" / "k"


def test_one_owner_per_backup_and_other_keys_of_the_seed_end_killed(store, tmp_path):
    """discard_abandoned: dead backups of the same variant and seed under other keys go (no
    run with these settings will resume them); a live one, and other seeds' dead ones (the next
    training of that seed resumes them), stay."""
    client, new_run = store
    mine = backup_dir("v", 42, "k1")
    dead, live = backup_dir("v", 42, "k0"), backup_dir("v", 42, "k2")
    other_seed = backup_dir("v", 43, "k3")  # killed while training seed 43 of v
    other_variant = backup_dir("w", 42, "k4")
    runs = {path: new_run() for path in (dead, live, other_seed, other_variant)}
    for path, run_id in runs.items():
        write_state(path, path.name, run_id)
    with claimed(live), claimed(mine):  # `live`: a training of v with other params, running
        with pytest.raises(StageError, match="another process is training"), claimed(mine):
            pass
        discard_abandoned(client, mine)
    assert not dead.exists() and status(client, runs[dead]) == "KILLED"
    for kept in (live, other_seed, other_variant):
        assert kept.exists(), kept
        assert read_state(kept)["meta"]["run_id"] == runs[kept]
        assert status(client, runs[kept]) == "RUNNING"


def test_tidy_ends_backups_of_removed_variants_and_of_results_dvc_restored(store, tmp_path):
    client, new_run = store
    assert tidy(client, {"v"}, tmp_path / "models") == []  # no backups at all
    names = ("gone", "cached", "seed", "resume", "resume_seed")
    runs = {name: new_run() for name in names}
    write_state(backup_dir("gone", 42, "k"), "k", runs["gone"])  # variant removed from params
    write_state(backup_dir("v", 42, "k1"), "k1", runs["cached"])  # its result is in models/
    write_state(backup_dir("v", 43, "k0"), "k0", runs["seed"])  # another seed's, in models/
    write_state(backup_dir("v", 42, "k2"), "k2", runs["resume"])  # may still be resumed
    write_state(backup_dir("v", 44, "k5"), "k5", runs["resume_seed"])  # so may this seed's
    (tmp_path / "models" / "v" / "seed43").mkdir(parents=True)
    (tmp_path / "models" / "v" / "train.json").write_text(json.dumps({"key": "k1"}))
    seed = tmp_path / "models" / "v" / "seed43" / "train.json"
    seed.write_text(json.dumps({"key": "k0"}))
    with claimed(backup_dir("v", 42, "k3")):  # a live training is never touched
        removed = tidy(client, {"v"}, tmp_path / "models")
    assert removed == [
        backup_dir("gone", 42, "k"),
        backup_dir("v", 42, "k1"),
        backup_dir("v", 43, "k0"),
    ]
    assert not (tmp_path / ".backup" / "gone").exists()  # its empty seed and variant dirs too
    assert not (tmp_path / ".backup" / "v" / "seed43").exists()
    for kept in (backup_dir("v", 42, "k2"), backup_dir("v", 42, "k3"), backup_dir("v", 44, "k5")):
        assert kept.exists()
    ended = {name: status(client, run_id) for name, run_id in runs.items()}
    assert ended == {
        "gone": "KILLED",
        "cached": "KILLED",
        "seed": "KILLED",
        "resume": "RUNNING",
        "resume_seed": "RUNNING",
    }


def test_a_cleaner_never_locks_a_backup_its_owner_is_removing(store):
    """An owner removes its backup holding the lock, the lock file last (discard): a tidy
    meanwhile finds the lock held, or no lock file, and then neither makes one nor touches
    the directory's files; an empty directory without a lock (a claim killed before its
    lock) is removed."""
    client, new_run = store
    work = backup_dir("gone", 42, "k")
    with claimed(work):
        write_state(work, "k", new_run())
        assert tidy(client, set(), work.parent) == []  # held: skipped
        (work / LOCK_FILE).unlink()  # as if its removal had taken the lock file first
        assert tidy(client, set(), work.parent) == []
        assert (work / STATE_FILE).is_file() and not (work / LOCK_FILE).exists()
    (work.parent / "k2").mkdir(parents=True)
    tidy(client, set(), work.parent)
    assert not (work.parent / "k2").exists()
