"""tools/schedule.py: the runner's start order (longest path to the end first)."""

from __future__ import annotations

import json
import os

import pytest

from tools.schedule import SECONDS_FILE, load_seconds, priorities, save_seconds

# DVC's plan order: a stage after what it depends on. Two trainings feed their evaluations
# and one comparison; the searched variant's training is the long one.
NEEDS = {
    "prepare": set(),
    "train@a": {"prepare"},
    "train_searched": {"prepare"},
    "evaluate@a": {"train@a"},
    "evaluate_searched": {"train_searched"},
    "compare": {"evaluate@a", "evaluate_searched"},
}
SECONDS = {"prepare": 2.0, "train@a": 20.0, "train_searched": 90.0, "evaluate@a": 3.0,
           "evaluate_searched": 4.0, "compare": 5.0}  # fmt: skip


def test_priority_is_own_time_plus_the_slowest_chain_after_it():
    level = priorities(NEEDS, SECONDS)
    assert level["compare"] == 5.0
    assert level["evaluate_searched"] == 4.0 + 5.0
    assert level["train_searched"] == 90.0 + 9.0
    assert level["train@a"] == 20.0 + 3.0 + 5.0
    assert level["prepare"] == 2.0 + 99.0
    ready = sorted(["train@a", "train_searched"], key=lambda n: -level[n])
    assert ready == ["train_searched", "train@a"]


def test_stages_never_timed_count_zero_and_keep_dvcs_order():
    level = priorities(NEEDS, {})
    assert set(level.values()) == {0.0}
    ready = ["train@a", "train_searched"]
    assert sorted(ready, key=lambda n: -level[n]) == ready  # a stable sort: DVC's order


def test_saved_times_merge_over_the_stored_ones(tmp_path):
    assert load_seconds(tmp_path) == {}
    save_seconds(tmp_path, {"train@a": 20.04, "compare": 5.0})
    save_seconds(tmp_path, {"train@a": 18.26})  # a later run that reran train@a only
    assert load_seconds(tmp_path) == {"compare": 5.0, "train@a": 18.3}
    text = (tmp_path / SECONDS_FILE).read_text()
    assert json.loads(text) == {"compare": 5.0, "train@a": 18.3} and text.endswith("}\n")
    save_seconds(tmp_path, {})  # a no-op run leaves the file as it was
    assert (tmp_path / SECONDS_FILE).read_text() == text


@pytest.mark.parametrize(
    "text", ['{"train@a": 20.0, "comp', "[1, 2]", '{"train@a": "fast"}', "\xff\xfe"]
)
def test_a_torn_or_foreign_file_is_warned_about_and_counts_as_empty(tmp_path, text):
    path = tmp_path / SECONDS_FILE
    path.parent.mkdir()
    path.write_bytes(text.encode("latin-1"))
    with pytest.warns(UserWarning, match=str(path)):
        assert load_seconds(tmp_path) == {}
    with pytest.warns(UserWarning, match=str(path)):  # and a run's times replace it
        save_seconds(tmp_path, {"compare": 5.0})
    assert load_seconds(tmp_path) == {"compare": 5.0}


def test_stages_no_longer_in_the_graph_are_dropped(tmp_path):
    save_seconds(tmp_path, {"train@a": 20.0, "train@old": 7.0})
    save_seconds(tmp_path, {"compare": 5.0}, current=["train@a", "compare", "prepare"])
    assert load_seconds(tmp_path) == {"compare": 5.0, "train@a": 20.0}


def test_the_file_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    # Ctrl-C (the runner saves in `finally`) or a crash mid-write leaves the old file.
    save_seconds(tmp_path, {"compare": 5.0})
    before = (tmp_path / SECONDS_FILE).read_bytes()

    def interrupted(*_args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)  # after the new text is written aside
    with pytest.raises(KeyboardInterrupt):
        save_seconds(tmp_path, {"compare": 6.0, "train@a": 20.0})
    assert (tmp_path / SECONDS_FILE).read_bytes() == before
    assert [p.name for p in (tmp_path / SECONDS_FILE).parent.iterdir()] == [SECONDS_FILE.name]
