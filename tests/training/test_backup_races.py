"""study.training.backups beside itself: trainings claiming, training in and removing their
backups while other stages tidy (the parallel runner), with no error and no live backup lost."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

from study.training.backups import (
    STATE_FILE,
    backup_dir,
    claimed,
    discard,
    discard_abandoned,
    read_state,
    tidy,
)

SECONDS = 3.0


def train(work, finish: bool) -> None:
    """A training's life in its backup: claimed, its state written and kept while it runs, then
    removed (finished) or left to resume (killed)."""
    with claimed(work):
        discard_abandoned(None, work)  # the states here name no MLflow run
        state = {"meta": {"key": work.name}, "history": {}, "snapshots": {}}
        (work / STATE_FILE).write_text(json.dumps(state))
        time.sleep(0.001)
        assert read_state(work) is not None, f"{work}: removed while its training ran"
        if finish:
            discard(work)


def test_trainings_and_tidies_at_once_fail_nothing_and_remove_no_live_backup(tmp_path, monkeypatch):
    """Trainings of a variant no longer in params (tidy removes their dead backups), killed
    trainings of a variant in params resumed again and again (tidy never touches them), and
    trainings of a result already in models/ (tidy removes them once dead), beside tidies."""
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    models = tmp_path / "models"
    (models / "v").mkdir(parents=True)
    (models / "v" / "train.json").write_text(json.dumps({"key": "done"}))
    lives = {
        "gone": lambda i: train(backup_dir("gone", 42 + i % 2, f"k{i % 3}"), finish=i % 2 == 0),
        "resumed": lambda i: train(backup_dir("v", 42, "resume"), finish=False),
        "done": lambda i: train(backup_dir("v", 43, "done"), finish=True),
        "tidy": lambda i: tidy(None, {"v"}, models),
        "tidy again": lambda i: tidy(None, {"v"}, models),
    }
    end = time.monotonic() + SECONDS

    def loop(name):  # the first error ends it, and is raised by result() below
        count = 0
        while time.monotonic() < end:
            lives[name](count)
            count += 1
        return count

    with ThreadPoolExecutor(len(lives)) as pool:
        runs = {name: pool.submit(loop, name) for name in lives}
    counts = {name: run.result() for name, run in runs.items()}
    assert min(counts.values()) > 20, counts  # each really ran, many times
    assert read_state(backup_dir("v", 42, "resume")) is not None  # never removed
