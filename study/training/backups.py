"""Training backups on disk, their resume key, and the MLflow runs they belong to.

Where a backup lives: <user's repo root>/.backup/<variant>/seed<S>/<key>/, where key hashes
what the weights depend on (resume_key), so an edit of the training code or params never
resumes old weights, and runs of one variant with other params (`dvc queue start -j 2`) never
share a directory. The root is DVC_ROOT under `dvc exp run --temp/--queue`, like the MLflow
store, so a killed queued run is found by the next run of the same experiment. A process holds
an flock on the directory while it trains: a directory nobody holds belongs to a dead process
(claimed() says who may remove one, and when, beside other stages running at once).
No Keras here: cheap to import.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from importlib.metadata import version
from pathlib import Path
from typing import Any

from study.config.code import module_files
from study.config.errors import StageError
from study.config.paths import BACKUP_DIR, REPO_ROOT, project_root
from study.config.variant import Variant
from study.io.files import file_md5

STATE_FILE = "training_state.json"
LOCK_FILE = "lock"
# The module whose code (with what it imports) computes the weights: train_model.
TRAINING_MODULE = "study.training.train"
# Libraries whose versions can change the weights (not MLflow, DVC or Ray: they only log).
WEIGHT_LIBRARIES = ("tensorflow-cpu", "keras", "numpy")


def resume_key(
    cfg: Variant, seed: int, deterministic: bool, data_files: list[Path], jit_compile: bool = False
) -> str:
    """A hash of what a training's weights depend on: its config (not `seeds`: how many
    trainings, not which), seed, determinism, XLA (train.jit_compile), data, library versions
    and the training code itself (TRAINING_MODULE and the first-party modules it imports).
    Nothing about where it runs (host, Ray node) or how it is logged: a backup made
    elsewhere resumes here."""
    deps = {
        "config": cfg.model_dump(mode="json", exclude_unset=True, exclude={"seeds"}),
        "seed": seed,
        "deterministic": deterministic,
        "jit_compile": jit_compile,
        "data": {f"{p.parent.name}/{p.name}": file_md5(p) for p in data_files},
        "versions": {lib: version(lib) for lib in WEIGHT_LIBRARIES},
        "python": platform.python_version(),
        "code": {str(p.relative_to(REPO_ROOT)): file_md5(p) for p in module_files(TRAINING_MODULE)},
    }
    return hashlib.sha256(json.dumps(deps, sort_keys=True).encode()).hexdigest()[:16]


def backup_dir(variant: str, seed: int, key: str) -> Path:
    """Where a training keeps its resumable state: in the user's repository (DVC_ROOT
    under `dvc exp run --temp/--queue`), beside the MLflow store, one directory per key."""
    return project_root() / BACKUP_DIR / variant / f"seed{seed}" / key


def read_state(work_dir: Path) -> dict[str, Any] | None:
    """The saved state of an interrupted run in work_dir, if any."""
    path = work_dir / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


@contextmanager
def _all_backups(exclusive: bool) -> Iterator[None]:
    """The flock on the backups' root directory itself (no lock file to leave behind): shared
    while a training claims its directory, exclusive while a cleaner checks and removes."""
    root = project_root() / BACKUP_DIR
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # releases the flock


@contextmanager
def claimed(work_dir: Path) -> Iterator[None]:
    """Hold work_dir's lock while training; fail if a live process already holds it.

    Who may remove a backup directory, and when (so no stage, however many run at once,
    fails or loses a live training because of another's cleanup):
    - its owner, holding the directory's lock (the whole training, from the claim), the lock
      file last (discard);
    - a cleaner (tidy, discard_abandoned), holding the backups' root lock exclusively across
      listing, locking (non-blocking, never creating the lock file: a held lock is a live
      training, a missing one a directory its owner is removing; both are skipped), reading
      the state and removing.
    A claim creates the directory and takes its lock under the root lock shared. So a cleaner
    never sees a directory between its creation and its lock, a claim never finds a directory
    locked by a cleaner (a held lock here means a live training: the error below is real),
    and no removal interleaves with a claim's mkdir of the variant and seed directories. A lock
    is only taken on the lock file at the directory's path (an owner removes its directory while
    it still holds the lock: a lock on the removed file would be no one's)."""
    with _all_backups(exclusive=False):
        fd = None
        while fd is None:
            work_dir.mkdir(parents=True, exist_ok=True)
            fd = _try_lock(work_dir, create=True)
            if fd is None and work_dir.is_dir():
                break  # held: a live training
    if fd is None:
        raise StageError(
            f"{work_dir}: another process is training this variant with the same settings;"
            " wait for it to finish or stop it"
        )
    try:
        yield
    finally:
        os.close(fd)


def _dead(paths: Iterable[Path]) -> Iterator[tuple[Path, dict[str, Any] | None]]:
    """Of these backups, those whose process is dead (their lock is free), with their saved
    state, each while its lock is held. The caller holds the root lock exclusively (nothing
    is created or removed meanwhile but by live owners, which are skipped)."""
    for path in paths:
        fd = _try_lock(path, create=False)
        if fd is None:  # a live training, or one its owner is removing (the lock file goes
            with suppress(OSError):  # last); an empty one: killed before its first lock
                path.rmdir()
            continue
        try:
            yield path, read_state(path)
        finally:
            os.close(fd)


def _subdirs(parent: Path) -> list[Path]:
    """parent's directories, sorted; none if parent is gone."""
    try:
        return sorted(p for p in parent.iterdir() if p.is_dir())
    except FileNotFoundError:
        return []


def _try_lock(work_dir: Path, create: bool) -> int | None:
    """An fd holding the lock of work_dir's lock file (the one at its path now); None if a
    live process holds it or work_dir is gone. Only the owner's claim creates the file: a
    cleaner that made one in a directory its owner is removing would hold a lock on a
    half-removed backup (its owner removes the lock file last, still holding it: discard)."""
    while True:
        try:
            fd = os.open(work_dir / LOCK_FILE, os.O_RDWR | (os.O_CREAT if create else 0), 0o600)
        except FileNotFoundError:
            return None  # removed by its owner, or not yet created
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        with suppress(FileNotFoundError):
            if os.stat(work_dir / LOCK_FILE).st_ino == os.fstat(fd).st_ino:
                return fd
        os.close(fd)  # its owner removed the file after we opened it


def discard(work_dir: Path, keep_lock: bool = False) -> None:
    """Remove a backup (its owner, done with it, holding its lock): everything but the lock
    file, then (unless keep_lock) the lock file and the directory, so that a cleaner finds
    either the lock held or no lock file (_try_lock), never a half-removed backup it may
    lock."""
    for path in work_dir.iterdir() if work_dir.is_dir() else []:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.name != LOCK_FILE:
            path.unlink()
    if not keep_lock:
        with suppress(FileNotFoundError):
            (work_dir / LOCK_FILE).unlink()
        with suppress(OSError):
            work_dir.rmdir()


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


def discard_abandoned(client: Any, work_dir: Path) -> None:
    """Dead backups of the same variant and seed under other keys (other params or code):
    nothing will resume them. Other seeds' backups are theirs to resume."""
    ended = []
    with _all_backups(exclusive=True):
        for path, saved in _dead(p for p in _subdirs(work_dir.parent) if p != work_dir):
            ended.append((saved or {}).get("meta", {}).get("run_id"))
            shutil.rmtree(path, ignore_errors=True)
    for run_id in ended:  # MLflow after the lock: no claim waits for the store
        end_killed(client, run_id)


def tidy(client: Any, variants: set[str], models_dir: Path) -> list[Path]:
    """End and remove backups nobody will resume; return them.

    Left by dead processes (their lock is free) and either of a variant no longer in params,
    or of a training whose result under the same key is already in models_dir (a killed
    run whose stage DVC then restored from its cache instead of rerunning it). Every stage
    that logs to MLflow calls it first, so a `dvc repro` whose next stage runs in this
    workspace cleans up what an earlier, killed one left. Only those directories are locked,
    and only under the root lock (claimed() says why that is safe beside live trainings)."""
    removed: list[Path] = []
    if not has_backups():
        return removed
    ended = []
    with _all_backups(exclusive=True):
        for variant_dir in _subdirs(project_root() / BACKUP_DIR):
            done = finished_keys(models_dir / variant_dir.name)
            for seed_dir in _subdirs(variant_dir):
                gone = variant_dir.name not in variants
                # only these are locked: one that may be resumed is never touched
                candidates = [p for p in _subdirs(seed_dir) if gone or p.name in done]
                for path, saved in _dead(candidates):
                    ended.append((saved or {}).get("meta", {}).get("run_id"))
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path)
            for empty in (*_subdirs(variant_dir), variant_dir):
                with suppress(OSError):  # not empty: a live or resumable backup
                    empty.rmdir()
    for run_id in ended:
        end_killed(client, run_id)
    return sorted(removed)


def has_backups() -> bool:
    """Whether any backup directory exists (cheap: tools/tidy.py skips MLflow otherwise)."""
    root = project_root() / BACKUP_DIR
    return any(_subdirs(seed) for variant in _subdirs(root) for seed in _subdirs(variant))


def finished_keys(variant_models: Path) -> set[str]:
    """The keys of the variant's finished trainings in models/<variant>/: its first seed's
    train.json and each other seed's (seed<S>/train.json)."""
    keys = set()
    seeds = [d / "train.json" for d in _subdirs(variant_models) if d.name.startswith("seed")]
    for path in [variant_models / "train.json", *seeds]:
        with suppress(FileNotFoundError):  # DVC removes a stage's outs before it reruns it
            keys.add(json.loads(path.read_text()).get("key"))
    return keys
