"""Training backups on disk, their resume key, and the MLflow runs they belong to.

Where a backup lives: <user's repo root>/.backup/<variant>/seed<S>/<key>/, where key hashes
what the weights depend on (resume_key), so an edit of the training code or params never
resumes old weights, and runs of one variant with other params (`dvc queue start -j 2`) never
share a directory. The root is DVC_ROOT under `dvc exp run --temp/--queue`, like the MLflow
store, so a killed queued run is found by the next run of the same experiment. A process holds
an flock on the directory while it trains: a directory nobody holds belongs to a dead process.
No Keras here: cheap to import.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
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


def resume_key(cfg: Variant, seed: int, deterministic: bool, data_files: list[Path]) -> str:
    """A hash of what a training's weights depend on: its config (not `seeds`: how many
    trainings, not which), seed, determinism, data, library versions and the training code
    itself (TRAINING_MODULE and the first-party modules it imports). Nothing about where it
    runs (host, Ray node) or how it is logged: a backup made elsewhere resumes here."""
    deps = {
        "config": cfg.model_dump(mode="json", exclude_unset=True, exclude={"seeds"}),
        "seed": seed,
        "deterministic": deterministic,
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


def abandoned(parent: Path, keep: Path | None) -> Iterator[tuple[Path, dict[str, Any] | None]]:
    """Backups under `parent` (one per key) whose process is dead (their lock is free).

    Yields (directory, its saved state) while holding the directory's lock, so the caller
    can end the state's MLflow run and remove the directory without racing a new owner."""
    if not parent.is_dir():
        return
    for path in sorted(parent.iterdir()):
        if path == keep or not path.is_dir():
            continue
        fd = _try_lock(path)
        if fd is None:
            continue  # a live training with other params
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


def discard_abandoned(client: Any, work_dir: Path) -> None:
    """Dead backups of the same variant and seed under other keys (other params or code):
    nothing will resume them. Other seeds' backups are theirs to resume."""
    for path, saved in abandoned(work_dir.parent, keep=work_dir):
        end_killed(client, (saved or {}).get("meta", {}).get("run_id"))
        discard(path)


def tidy(client: Any, variants: set[str], models_dir: Path) -> list[Path]:
    """End and remove backups nobody will resume; return them.

    Left by dead processes (their lock is free) and either of a variant no longer in params,
    or of a training whose result under the same key is already in models_dir (a killed
    run whose stage DVC then restored from its cache instead of rerunning it). Every stage
    that logs to MLflow calls it first, so a `dvc repro` whose next stage runs in this
    workspace cleans up what an earlier, killed one left."""
    removed: list[Path] = []
    if not any(project_root().joinpath(BACKUP_DIR).glob("*/seed*/*")):
        return removed
    for variant_dir in sorted(project_root().joinpath(BACKUP_DIR).glob("*")):
        done = finished_keys(models_dir / variant_dir.name)
        for seed_dir in sorted(variant_dir.glob("seed*")):
            for path, saved in abandoned(seed_dir, keep=None):
                if variant_dir.name in variants and path.name not in done:
                    continue  # may be resumed by the next run with these settings
                end_killed(client, (saved or {}).get("meta", {}).get("run_id"))
                discard(path)
                removed.append(path)
        for empty in (*sorted(variant_dir.glob("seed*")), variant_dir):
            if empty.is_dir() and not any(empty.iterdir()):
                empty.rmdir()
    return removed


def finished_keys(variant_models: Path) -> set[str]:
    """The keys of the variant's finished trainings in models/<variant>/: its first seed's
    train.json and each other seed's (seed<S>/train.json)."""
    summaries = [variant_models / "train.json", *variant_models.glob("seed*/train.json")]
    return {json.loads(path.read_text()).get("key") for path in summaries if path.is_file()}
