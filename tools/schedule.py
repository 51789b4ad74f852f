"""The order in which tools/ray_repro.py starts ready stages: longest path to the end first.

Each stage's expected time is its time in the last run that ran it, kept in
reports/stage_seconds.json (written by the runner, committed with dvc.lock, so that a fresh
clone of main schedules as main's last run measured). A stage's priority is its own expected
time plus that of its slowest chain of dependants (list scheduling by "bottom level"): on two
cores, the one long training of the study then starts first instead of last, when only one
core would still be busy. Stages never timed count 0 s. The order changes no result, so a
file that cannot be read as such times is only warned about, and counts as empty.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable
from pathlib import Path

from study.io.files import write_atomic

SECONDS_FILE = Path("reports") / "stage_seconds.json"
DIGITS = 1  # tenths of a second: the file changes only when a time does


def load_seconds(root: Path) -> dict[str, float]:
    """The stored seconds per stage; none if the file is missing, or (with a warning naming
    it) not a JSON object of stage name -> seconds (e.g. torn by a crash or a merge)."""
    path = root / SECONDS_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_bytes())
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        data = err
    if isinstance(data, dict) and all(_is_seconds(v) for v in data.values()):
        return data
    warnings.warn(f"{path}: not stage times ({data!s:.80}); ignored", stacklevel=2)
    return {}


def _is_seconds(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def save_seconds(
    root: Path, seconds: dict[str, float], current: Iterable[str] | None = None
) -> None:
    """Merge this run's stage times over the stored ones (stages not run keep theirs; with
    `current`, the graph's stage names, those of stages no longer in it are dropped). Written
    atomically: a crash or Ctrl-C leaves the old file or the new one, never a torn one."""
    if not seconds:
        return
    merged = {**load_seconds(root), **{k: round(v, DIGITS) for k, v in seconds.items()}}
    if current is not None:
        keep = set(current)
        merged = {k: v for k, v in merged.items() if k in keep}
    text = json.dumps(merged, indent=1, sort_keys=True) + "\n"
    write_atomic(root / SECONDS_FILE, text.encode())


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
