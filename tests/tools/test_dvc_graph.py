"""tools/dvc_graph.py's LockWriter: dvc.lock as DVC writes it, parsed once per run."""

from __future__ import annotations

import yaml
from conftest import dvc
from dvc.repo import Repo
from dvc.utils import serialize
from dvc_projects import GRAPH, project

from tools.dvc_graph import LockWriter, plan


def test_a_lock_file_is_parsed_once_unless_another_hand_wrote_it(tmp_path, monkeypatch):
    root = project(tmp_path, GRAPH)
    dvc(root, "repro")
    lock = root / "dvc.lock"
    as_dvc_wrote_it = lock.read_bytes()
    parsed = []
    parse = serialize.parse_yaml_for_update
    monkeypatch.setattr(
        serialize, "parse_yaml_for_update", lambda *a: parsed.append(a) or parse(*a)
    )
    monkeypatch.chdir(root)  # plan() collects ./dvc.yaml, as `dvc repro` does
    stages = {s.name: s for s, _ in plan(Repo()).values()}
    writer = LockWriter(list(stages.values()))
    for name in stages:  # as the runner records them, one by one
        writer.write([stages[name]])
    assert len(parsed) == 1
    assert lock.read_bytes() == as_dvc_wrote_it  # nothing changed: DVC's bytes
    # Edited meanwhile (here: `e` dropped): read again, the edit kept.
    data = yaml.safe_load(lock.read_text())
    del data["stages"]["e"]
    lock.write_text(yaml.safe_dump(data, sort_keys=False))
    writer.write([stages["a"]])
    assert len(parsed) == 2
    assert list(yaml.safe_load(lock.read_text())["stages"]) == ["a", "b", "c", "d"]
