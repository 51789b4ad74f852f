"""docs/team.md's and docs/runner.md's recipes commit what a teammate's clone needs: the
DVC remote's configuration after `dvc remote add -d`, and every output dvc.yaml keeps in git
(`cache: false`), search/best.yaml included."""

from __future__ import annotations

import re
import shlex

import pytest
import yaml

from study.config.paths import REPO_ROOT


def git_outputs() -> set[str]:
    """dvc.yaml's `cache: false` outputs (metrics and plots too), up to a template's `${`."""
    found = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, dict) and value.get("cache") is False:
                    found.add(key.split("${")[0].rstrip("/"))
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"])
    return found


def added(command_line: str) -> list[str]:
    """The paths of the `git add` in one shell line (`&&`-chained commands)."""
    for part in re.split(r"&&|;", command_line):
        words = shlex.split(part, comments=True)
        if words[:2] == ["git", "add"]:
            return words[2:]
    return []


@pytest.mark.parametrize("guide", ["team.md", "runner.md"])
def test_the_recipes_commit_every_output_kept_in_git(guide):
    outputs = git_outputs()
    assert {"search/best.yaml", "variants", "reports/compare.md"} <= outputs, outputs
    lines = [line for line in (REPO_ROOT / "docs" / guide).read_text().splitlines()]
    results = [added(line) for line in lines if "git add dvc.lock" in line]
    assert results, f"docs/{guide} has no `git add dvc.lock ...`"
    for paths in results:
        for out in outputs:
            covered = any(out == p or out.startswith(p.rstrip("/") + "/") for p in paths)
            assert covered, f"docs/{guide}: `git add {' '.join(paths)}` leaves out {out}"


def test_the_team_recipe_commits_the_remote_it_adds():
    lines = (REPO_ROOT / "docs" / "team.md").read_text().splitlines()
    remote = next(i for i, line in enumerate(lines) if line.startswith("dvc remote add -d"))
    commits = [
        line for line in lines[remote:] if "git add" in line and ".dvc/config" in added(line)
    ]
    assert commits and "git commit" in commits[0]
