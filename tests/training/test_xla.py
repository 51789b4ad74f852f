"""train.jit_compile: XLA-compiled steps under TF's op determinism, bit-identical run to run
(a resume: tests/training/test_resume.py; crossval folds: below)."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest
from conftest import tiny_fashion

from study.crossval.folds import variant_folds
from study.training.fitting import configure_tf, fit
from study.training.model import build_model

JIT_REFUSED = ".*jit_compile"  # Keras: "Model doesn't support `jit_compile=True`..."


def trained(cfg, jit):
    keras.backend.clear_session()
    configure_tf(seed=5, deterministic=True, threads=1)  # as each train@V process
    train, val = tiny_fashion()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", JIT_REFUSED)
        model = build_model(cfg, train[0].shape[1:], jit_compile=jit)
    assert model.jit_compile is jit
    history = fit(model, cfg, train, val, seed=5)
    return model.get_weights(), history.history


# A batch size that divides the rows (200 train, 40 val): XLA compiles a step per batch shape,
# and a partial last batch nearly doubles the time (the crossval test below keeps one: 40 fit
# rows in batches of 30).
def test_xla_stays_on_under_op_determinism_and_repeats_bit_for_bit(variant):
    cfg = variant("dropout", epochs=2, batch_size=20)
    xla, again, plain = trained(cfg, True), trained(cfg, True), trained(cfg, False)
    assert xla[1] == again[1]
    for a, b in zip(xla[0], again[0], strict=True):
        np.testing.assert_array_equal(a, b)
    # other weights than plain steps: XLA fuses and orders float ops its own way, which is
    # why train.jit_compile is a dependency of every training stage (dvc.yaml)
    assert any(not np.array_equal(a, b) for a, b in zip(xla[0], plain[0], strict=True))


def test_a_saved_xla_model_loads_without_keras_warning(variant, tmp_path):
    configure_tf(seed=5, deterministic=True, threads=1)
    model = build_model(variant("baseline"), (28, 28), jit_compile=True)
    model.save(tmp_path / "m.keras")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", JIT_REFUSED)
        keras.saving.load_model(tmp_path / "m.keras")


@pytest.mark.parametrize("jit", [False, True], ids=["plain", "xla"])
def test_crossval_folds_with_xla_repeat(variant, jit):
    cfg = variant("thoracic_bce", epochs=2)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    splits = [(np.arange(0, 40), np.arange(40, 60)), (np.arange(20, 60), np.arange(0, 20))]
    folds = [(x[a], x[b]) for a, b in splits]
    runs = []
    for _ in range(2):
        keras.backend.clear_session()
        configure_tf(seed=3, deterministic=True, threads=1)
        runs.append(variant_folds(cfg, folds, y, splits, 0.5, jit_compile=jit, seed=3))
    assert runs[0] == runs[1]
