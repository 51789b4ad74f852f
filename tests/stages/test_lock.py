"""dvc.lock on main is written by main's code and params: a fresh clone's `dvc status`
reports no changed command, code dependency or param (only the data and outputs a clone
does not have yet)."""

from __future__ import annotations

import json
import subprocess

from conftest import dvc

from study.config.paths import REPO_ROOT

# What `dvc status` may say on a fresh clone: its data and outputs are not there yet.
ABSENT = ("deleted", "not in cache")


def lock_drift(status: dict) -> list[str]:
    """Every entry of `dvc status --json` that is not an absent file."""
    drift = []
    for stage, changes in status.items():
        for change in changes:
            if not isinstance(change, dict):  # e.g. "changed command", "always changed"
                drift.append(f"{stage}: {change}")
                continue
            for kind, entries in change.items():
                for path, state in (entries or {}).items():
                    if state not in ABSENT:
                        drift.append(f"{stage}: {kind} {path}: {state}")
    return drift


def test_lock_drift_names_commands_code_and_params():
    status = {
        "train@a": [
            "changed command",
            {"changed deps": {"stages/train.py": "modified", "data/x.npz": "deleted"}},
            {"changed deps": {"params.yaml": {"seed": "modified"}}},
            {"changed outs": {"models/a/best.keras": "deleted", "m.json": "not in cache"}},
        ]
    }
    assert lock_drift(status) == [
        "train@a: changed command",
        "train@a: changed deps stages/train.py: modified",
        "train@a: changed deps params.yaml: {'seed': 'modified'}",
    ]


def test_a_fresh_clone_of_head_matches_its_dvc_lock(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(clone)], check=True)
    drift = lock_drift(json.loads(dvc(clone, "status", "--json")))
    assert not drift, (
        "dvc.lock was not written by HEAD's code and params; run `make repro` and commit"
        " dvc.lock:\n" + "\n".join(drift)
    )
