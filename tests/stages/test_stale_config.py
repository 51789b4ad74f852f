"""A stage run outside DVC (`python -m stages.train V`, `mlflow run . -e train`) after a
params.yaml edit refuses the stale merged config (variants/<V>.json, search/best.yaml) in one
line naming the file and the stage to rerun, before MLflow, data or TensorFlow."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import yaml

import stages.crossval
import stages.train
import stages.variants
from study.config.cli import run_stage
from study.config.params import load_params
from study.config.paths import REPO_ROOT, SEARCH_BEST


class Reached(Exception):
    """The stage got past its config: it would go on to train."""


def reached(*args, **kwargs):
    raise Reached


@pytest.fixture
def repo(params, tmp_path, monkeypatch) -> Path:
    """params.yaml, search/best.yaml and the variants stage's files as `dvc repro` left them."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (tmp_path / SEARCH_BEST).parent.mkdir()
    shutil.copy(REPO_ROOT / SEARCH_BEST, tmp_path / SEARCH_BEST)
    for module in (stages.variants, stages.train, stages.crossval):
        monkeypatch.setattr(module, "REPO_ROOT", tmp_path)
        monkeypatch.setattr(module, "load_params", lambda: load_params(tmp_path))
    stages.variants.main()
    monkeypatch.setattr(stages.train, "setup_mlflow", reached)
    monkeypatch.setattr(stages.crossval, "non_test_rows", reached)
    return tmp_path


def edit(repo: Path, dotted: str, value) -> None:
    """params.yaml with one value changed, as a user edits it after `dvc repro`."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    *parents, last = dotted.split(".")
    node = params
    for part in parents:
        node = node[part]
    node[last] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def run(module, variant: str, monkeypatch, capsys) -> str:
    """The stage's main as its __main__ runs it: the one error line it prints."""
    monkeypatch.setattr(sys, "argv", [module.__name__, variant])
    with pytest.raises(SystemExit) as exited:
        run_stage(module.main)
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


@pytest.mark.parametrize(
    ("dotted", "value", "changed"),
    [
        ("variants.dropout.dropout", 0.3, "dropout"),  # the variant's own field
        ("train.defaults.patience", 3, "patience"),  # what it inherits
        ("train.presets.regularized.units", 32, "units"),  # a preset it lists
    ],
)
def test_train_refuses_a_variant_file_older_than_params(
    repo, monkeypatch, capsys, dotted, value, changed
):
    edit(repo, dotted, value)
    assert run(stages.train, "dropout", monkeypatch, capsys) == (
        f"error: {repo}/variants/dropout.json: stale, {changed} differ from variant 'dropout'"
        " as params.yaml merges it now; run `dvc repro variants`\n"
    )


def test_crossval_refuses_a_variant_file_older_than_params(repo, monkeypatch, capsys):
    edit(repo, "variants.thoracic_bce.epochs", 7)
    err = run(stages.crossval, "thoracic_bce", monkeypatch, capsys)
    assert err.startswith(f"error: {repo}/variants/thoracic_bce.json: stale, epochs differ")
    assert err.endswith("; run `dvc repro variants`\n")


def test_a_current_file_trains_also_after_other_edits(repo, monkeypatch):
    edit(repo, "variants.baseline.units", 128)  # another variant: dropout's file is current
    edit(repo, "evaluate.threshold", 0.4)
    monkeypatch.setattr(sys, "argv", ["stages.train", "dropout"])
    with pytest.raises(Reached):
        stages.train.main()
    monkeypatch.setattr(sys, "argv", ["stages.crossval", "thoracic_bce"])
    with pytest.raises(Reached):
        stages.crossval.main()


def test_the_searched_variant_takes_its_variant_fields_now_and_refuses_another_base(
    repo, monkeypatch, capsys
):
    """search.variant_fields merge over search/best.yaml when the searched variant trains (an
    edit retrains it, no new search); search.base and search.dataset are the search's."""
    searched = load_params(repo).search.variant
    monkeypatch.setattr(sys, "argv", ["stages.train", searched])
    with pytest.raises(Reached):  # search/best.yaml as the search wrote it for these params
        stages.train.main()
    edit(repo, "search.variant_fields.epochs", 80)
    assert load_params(repo).variant(searched).epochs == 80
    with pytest.raises(Reached):
        stages.train.main()
    edit(repo, "search.base", ["dense64"])
    assert run(stages.train, searched, monkeypatch, capsys) == (
        f"error: {repo}/search/best.yaml: stale, presets differ from search.dataset and"
        " search.base in params.yaml now; run `dvc repro search`\n"
    )
