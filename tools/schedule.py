"""The order in which tools/ray_repro.py starts ready stages: longest path to the end first.

Each stage's expected time is its time in the last run that ran it, kept in
reports/stage_seconds.json (written by the runner, committed with dvc.lock, so that a fresh
clone of main schedules as main's last run measured). A stage's priority is its own expected
time plus that of its slowest chain of dependants (list scheduling by "bottom level"): on two
cores, the one long training of the study then starts first instead of last, when only one
core would still be busy. Stages never timed count 0 s. The order changes no result.
"""

from __future__ import annotations

import json
from pathlib import Path

SECONDS_FILE = Path("reports") / "stage_seconds.json"
DIGITS = 1  # tenths of a second: the file changes only when a time does


def load_seconds(root: Path) -> dict[str, float]:
    """The stored seconds per stage; none if the file is missing."""
    path = root / SECONDS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def save_seconds(root: Path, seconds: dict[str, float]) -> None:
    """Merge this run's stage times over the stored ones (stages not run keep theirs)."""
    if not seconds:
        return
    merged = {**load_seconds(root), **{k: round(v, DIGITS) for k, v in seconds.items()}}
    path = root / SECONDS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(merged, indent=1, sort_keys=True) + "\n")


def priorities(needs: dict[str, set[str]], seconds: dict[str, float]) -> dict[str, float]:
    """Per stage: its expected seconds plus the longest chain of stages that depend on it."""
    dependants: dict[str, list[str]] = {name: [] for name in needs}
    for name, deps in needs.items():
        for dep in deps:
            dependants.setdefault(dep, []).append(name)
    level: dict[str, float] = {}
    # DVC's plan lists a stage after what it depends on: dependants are done first backwards.
    for name in reversed(list(needs)):
        after = max((level[d] for d in dependants[name]), default=0.0)
        level[name] = seconds.get(name, 0.0) + after
    return level
