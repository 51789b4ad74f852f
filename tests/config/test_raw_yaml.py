"""study.config.raw: params.yaml read as DVC writes it (YAML 1.2), so a small float typed by
hand or written by `dvc exp run -S` is a number all the way to Keras. The real `dvc exp run
-S` case runs in tests/stages/test_team_e2e.py (the queued experiments)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from study.config.params import load_params
from study.config.paths import REPO_ROOT
from study.config.raw import read_yaml
from study.training.model import build_model


@pytest.mark.parametrize("typed", ["1e-5", "1e-05", "0.00001", "1.0e-5"])
def test_a_small_float_typed_by_hand_reaches_keras_as_a_number(typed, tmp_path):
    text = (REPO_ROOT / "params.yaml").read_text()
    entry = "weight_decay: {dataset: fashion_mnist, presets: [regularized], "
    assert entry in text
    (tmp_path / "params.yaml").write_text(text.replace(entry, f"{entry}kernel_l2: {typed}, "))
    shutil.copytree(REPO_ROOT / "search", tmp_path / "search")  # the searched variant's file
    cfg = load_params(tmp_path).variant("weight_decay")
    assert cfg.kernel_l2 == 1e-05
    model = build_model(cfg, (28, 28))
    regularizer = model.get_layer("hidden_1").kernel_regularizer
    assert regularizer.get_config()["l2"] == pytest.approx(1e-05)


def test_yaml_1_2_not_1_1(tmp_path: Path):
    """What differs between the two: YAML 1.1's yes/no/on/off booleans and exponent-only
    floats; DVC (ruamel.yaml) reads both the 1.2 way."""
    path = tmp_path / "x.yaml"
    path.write_text("a: 1e-05\nb: yes\nc: true\nd: 010\n")
    assert read_yaml(path) == {"a": 1e-05, "b": "yes", "c": True, "d": 10}
