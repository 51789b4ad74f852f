"""Training backups on disk and the MLflow runs they belong to (no Keras: cheap to import).

Where the backup lives: <user's repo root>/.backup/<variant>/<key>/, where key hashes
everything the result depends on (merged config, data, seed, library versions and the
stage code), so an edit of the code or params never resumes old weights, and runs of one
variant with different params (`dvc queue start -j 2`) never share a directory. The root
is DVC_ROOT under `dvc exp run --temp/--queue`, like the MLflow store, so a killed queued
run is found by the next run of the same experiment. A process holds an flock on the
directory while it trains: a directory nobody holds belongs to a dead process.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from stages.params import BACKUP_DIR, StageError, project_root

STATE_FILE = "training_state.json"
LOCK_FILE = "lock"


def read_state(work_dir: Path) -> dict[str, Any] | None:
    """The saved state of an interrupted run in work_dir, if any."""
    path = work_dir / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


@contextmanager
def claimed(work_dir: Path) -> Iterator[None]:
    """Hold work_dir's lock while training; fail if a live process already holds it."""
    work_dir.mkdir(parents=True, exist_ok=True)
    fd = _try_lock(work_dir)
    if fd is None:
        raise StageError(
            f"{work_dir}: another process is training this variant with the same settings;"
            " wait for it to finish or stop it"
        )
    try:
        yield
    finally:
        os.close(fd)


def abandoned(variant_dir: Path, keep: Path | None) -> Iterator[tuple[Path, dict[str, Any] | None]]:
    """Backups of a variant under other keys whose process is dead (their lock is free).

    Yields (directory, its saved state) while holding the directory's lock, so the caller
    can end the state's MLflow run and remove the directory without racing a new owner."""
    if not variant_dir.is_dir():
        return
    for path in sorted(variant_dir.iterdir()):
        if path == keep or not path.is_dir():
            continue
        fd = _try_lock(path)
        if fd is None:
            continue  # a live training of this variant with other params
        try:
            yield path, read_state(path)
        finally:
            os.close(fd)


def _try_lock(work_dir: Path) -> int | None:
    fd = os.open(work_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def discard(work_dir: Path, keep_lock: bool = False) -> None:
    """Remove a backup; with keep_lock, all but the lock file its owner holds."""
    if not keep_lock:
        shutil.rmtree(work_dir, ignore_errors=True)
        return
    for path in work_dir.iterdir() if work_dir.is_dir() else []:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.name != LOCK_FILE:
            path.unlink()


def resume_or_start(client: Any, work_dir: Path, key: str) -> str | None:
    """The MLflow run id to resume when work_dir holds a backup made under `key`.

    Only a run that still exists in the current store and is not FINISHED is resumed.
    Anything else (no run id yet, a run of another store) starts over: the backup is
    discarded and its run, if still RUNNING, marked KILLED.
    """
    saved = read_state(work_dir) or {}
    meta = saved.get("meta", {})
    status = run_status(client, meta.get("run_id"))
    if meta.get("key") == key and status not in (None, "FINISHED"):
        return meta["run_id"]
    end_killed(client, meta.get("run_id"))
    discard(work_dir, keep_lock=True)  # the caller holds the lock: start over in place
    return None


def run_status(client: Any, run_id: str | None) -> str | None:
    """The run's status in the current store, or None if there is no such run."""
    from mlflow.exceptions import MlflowException

    if not run_id:
        return None
    try:
        return client.get_run(run_id).info.status
    except MlflowException:
        return None


def end_killed(client: Any, run_id: str | None) -> None:
    """Mark an interrupted run KILLED (a run of another store, or an ended run, is left)."""
    if run_status(client, run_id) == "RUNNING":
        client.set_terminated(run_id, status="KILLED")


def backup_dir(variant: str, key: str) -> Path:
    """Where a training keeps its resumable state: in the user's repository (DVC_ROOT
    under `dvc exp run --temp/--queue`), beside the MLflow store, one directory per key."""
    return project_root() / BACKUP_DIR / variant / key


def discard_abandoned(client: Any, work_dir: Path) -> None:
    """Backups of this variant under other keys, left by dead processes: end, remove."""
    for path, saved in abandoned(work_dir.parent, keep=work_dir):
        end_killed(client, (saved or {}).get("meta", {}).get("run_id"))
        discard(path)


def tidy(client: Any, variants: set[str], models_dir: Path) -> list[Path]:
    """End and remove backups nobody will resume; return them.

    Left by dead processes (their lock is free) and either of a variant no longer in params,
    or of a training whose result under the same key is already in models_dir (a killed
    run whose stage DVC then restored from its cache instead of rerunning it)."""
    removed = []
    for variant_dir in sorted(project_root().joinpath(BACKUP_DIR).glob("*")):
        done = finished_keys(models_dir / variant_dir.name)
        for path, saved in abandoned(variant_dir, keep=None):
            if variant_dir.name in variants and path.name not in done:
                continue  # may be resumed by the next run with these settings
            end_killed(client, (saved or {}).get("meta", {}).get("run_id"))
            discard(path)
            removed.append(path)
        if variant_dir.is_dir() and not any(variant_dir.iterdir()):
            variant_dir.rmdir()
    return removed


def finished_keys(variant_models: Path) -> set[str]:
    """The keys of the variant's finished trainings in models/<variant>/: train@V's
    train.json and each other seed's (seeds@V: seeds/seed<S>/train.json)."""
    summaries = [variant_models / "train.json", *variant_models.glob("seeds/seed*/train.json")]
    return {json.loads(path.read_text()).get("key") for path in summaries if path.is_file()}
