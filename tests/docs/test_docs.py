"""The guides' recipes run: every command block of README.md and docs/*.md, in order, in one
shell session per document (tests/docs/doc_shell.py), on a private copy of the tiny study
(tests/conftest.py) with the venv on PATH as `source .venv/bin/activate` puts it; or it is
marked `<!-- skip: next "why" -->` just before it. The copy's params are tiny, so a recipe
that takes an hour on the real study takes seconds here."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ran as ran_stages
from conftest import sh, study_copy
from doc_shell import SHELLS, DocShell, run_document
from sybil.example import SybilFailure

from bench.workspace import dvc_bin, pipeline_env
from study.config.paths import REPO_ROOT

pytestmark = pytest.mark.slow
DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^ *```+ *(\S+)", re.MULTILINE)


def command_blocks(text: str) -> int:
    """The fenced blocks whose info string starts with a language the docs tests run."""
    return sum(match.group(1) in (*SHELLS, "python") for match in FENCE.finditer(text))


def user_env() -> dict[str, str]:
    """A user's shell after `source .venv/bin/activate` (pipeline_env: the venv's bin first)."""
    return pipeline_env(DATA_MIRRORS="", VIRTUAL_ENV=str(REPO_ROOT / ".venv"))


def make_shell(built: Path, tmp_path: Path) -> DocShell:
    def workspace() -> Path:
        repo = study_copy(built, tmp_path / "repo")
        (repo / ".venv").symlink_to(REPO_ROOT / ".venv")  # `source .venv/bin/activate`
        # a clone of this repository is on main; the copy's `git init` may have said master
        subprocess.run(["git", "branch", "-M", "main"], cwd=repo, check=True)
        return repo

    state = tmp_path / "shell"
    state.mkdir()
    return DocShell(workspace, user_env(), state)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_the_docs_recipes_run_on_the_tiny_study(doc, built_study, tmp_path):
    shell = make_shell(built_study, tmp_path)
    try:
        ran, skipped = run_document(doc, shell)
    finally:
        if (tmp_path / "repo" / ".dvc" / "tmp" / "exps").is_dir():  # idle queue workers
            subprocess.run([dvc_bin(), "queue", "stop"], cwd=tmp_path / "repo",
                           env=user_env(), capture_output=True, timeout=120)  # fmt: skip
    print(doc.name, "block line, seconds:", list(zip(ran, shell.seconds, strict=True)))
    # every command block ran or was marked: an info string the parser does not take
    # (```bash title=x) would otherwise be silently left out
    assert len(ran) + len(skipped) == command_blocks(doc.read_text()), (ran, skipped)
    if doc.name == "team.md":
        sweep_was_shared(tmp_path)


def sweep_was_shared(tmp_path: Path) -> None:
    """docs/team.md's sweep: each grid point reran only the baseline's stages, through two
    queue workers at once into the user's MLflow store (none lost, no lock error), its small
    float typed as `0.00001` reaching the training as a number; `make report` puts both side
    by side; the teammate's clone lists the pushed experiment with its metrics."""
    import mlflow

    repo = tmp_path / "repo"
    for name in ("l2-1", "l2-2"):
        log = sh(repo, dvc_bin(), "queue", "logs", name, env=user_env())
        assert ran_stages(log) == ["compare", "evaluate@baseline", "train@baseline", "variants"]
        assert "database is locked" not in log, log
    store = mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    exp = store.get_experiment_by_name("keras-regularization")
    runs = store.search_runs([exp.experiment_id], "tags.dvc_exp_name LIKE 'l2-%'")
    l2 = {
        r.data.tags["dvc_exp_name"]: r.data.params["variant.kernel_l2"] for r in runs
        if r.info.status == "FINISHED" and r.info.run_name == "baseline"
    }  # fmt: skip
    assert l2 == {"l2-1": "1e-05", "l2-2": "0.0001"}, [(r.info.run_name, r.data.tags) for r in runs]
    table = sh(repo, sys.executable, "-m", "tools.report", "--exp", "l2-1", "--exp", "l2-2",
               env=user_env())  # fmt: skip
    assert all(word in table for word in ("l2-1", "l2-2", "baseline", "FINISHED")), table
    shown = subprocess.run(
        [dvc_bin(), "exp", "show", "--json", "-A"], cwd=tmp_path / "teammate", env=user_env(),
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    exps = {e["name"]: e for base in json.loads(shown) for e in base.get("experiments") or []}
    assert "l2-2" in exps, sorted(exps)
    data = exps["l2-2"]["revs"][0]["data"]
    assert data["metrics"]["metrics/baseline.json"]["data"]["best_val_accuracy"] >= 0


def test_a_block_marked_as_run_elsewhere_runs_there():
    """A block skipped as `runs in docs/<guide>.md` (README's experiments, the same as
    team.md's) has each of its commands in a block of that guide, which the suite runs."""
    marked = re.compile(r'<!-- skip: next "runs in (\S+?\.md)[^"]*" -->\n```\w+\n(.*?)```', re.S)
    found = 0
    for doc in DOCS:
        for guide, block in marked.findall(doc.read_text()):
            commands = set(command_lines((REPO_ROOT / guide).read_text()))
            missing = [c for c in command_lines(f"```bash\n{block}```") if c not in commands]
            assert not missing, f"{doc.name}: not in {guide}: {missing}"
            found += 1
    assert found  # README.md's


def command_lines(text: str) -> list[str]:
    """The commands of a text's fenced blocks, each without its comment and spacing."""
    blocks = re.findall(r"```\w+\n(.*?)```", text, re.S)
    lines = (line.split(" #")[0].strip() for block in blocks for line in block.splitlines())
    return [" ".join(line.split()) for line in lines if line and not line.startswith("#")]


def test_a_broken_recipe_fails_and_names_its_line(built_study, tmp_path):
    """A doc edit that breaks a command fails the docs test: docs/search.md with a typo."""
    doc = tmp_path / "search.md"
    text = (REPO_ROOT / "docs" / "search.md").read_text()
    assert "reports/search_trials.md" in text
    doc.write_text(text.replace("reports/search_trials.md", "reports/search_trial.md"))
    with pytest.raises(SybilFailure, match=r"search\.md:\d+: the ```bash block exited 1"):
        run_document(doc, make_shell(built_study, tmp_path))


def test_blocks_share_one_shell_and_skip_markers_need_a_reason(tmp_path):
    """Exports and `cd` carry over between a document's blocks; a marked block does not run;
    a marker without a reason, or an unmarked failing block, fails."""
    (tmp_path / "work" / "sub").mkdir(parents=True)
    doc = tmp_path / "doc.md"
    doc.write_text(
        "```bash\nexport GREETING=hello\ncd sub\n```\n\n"
        '<!-- skip: next "needs an S3 bucket" -->\n```bash\nexit 3\n```\n\n'
        '```console\n$ test "$GREETING" = hello && test "$(basename "$PWD")" = sub\nhello\n```\n'
        "```python\nimport os\nassert os.environ['GREETING'] == 'hello'\n```\n"
    )
    shell = DocShell(lambda: tmp_path / "work", user_env(), tmp_path)
    ran, skipped = run_document(doc, shell)
    assert ran == [1, 11, 15] and skipped == [(7, "needs an S3 bucket")]
    doc.write_text("<!-- skip: next -->\n```bash\nexit 3\n```\n")
    with pytest.raises(AssertionError, match="a skip marker without a reason"):
        run_document(doc, DocShell(lambda: tmp_path / "work", user_env(), tmp_path))
    doc.write_text("```sh\ntrue\nfalse\necho not reached\n```\n")
    with pytest.raises(SybilFailure, match="exited 1"):
        run_document(doc, DocShell(lambda: tmp_path / "work", user_env(), tmp_path))
