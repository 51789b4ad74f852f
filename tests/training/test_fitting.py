"""study.training.fitting: every training's class weights, as Keras's fit gets them."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import thoracic_rows

from bench.workspace import pipeline_env
from study.training.fitting import class_weights, configure_tf, fit
from study.training.model import build_model
from training import threads_probe


def test_class_weights_unset_balanced_and_given(variant):
    y = np.array([0] * 8 + [1] * 2)
    assert class_weights(variant("thoracic_bce"), y) is None  # unset: every row weighs 1
    balanced = class_weights(variant("thoracic_bce", class_weight="balanced"), y)
    assert balanced == pytest.approx({0: 10 / (2 * 8), 1: 10 / (2 * 2)})
    given = class_weights(variant("thoracic_bce", class_weight={0: 1, 1: 3}), y)
    assert given == {0: 1.0, 1: 3.0}


def test_class_weights_reach_keras_fit(variant, monkeypatch):
    """The variant's class_weight is what Keras's fit gets (the tf.data batches carry no
    sample weights, so fit turns it into per-row weights of the loss)."""
    seen = []
    original = keras.Model.fit

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("class_weight"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", spy)
    rows = thoracic_rows(120, 4)
    x, y = rows[:, :-1].astype(np.float32), rows[:, -1].astype(np.int64)
    train, val = (x[:90], y[:90]), (x[90:], y[90:])
    balanced = variant("thoracic_bce_clean_balanced", epochs=2)
    for cfg in (balanced, variant("thoracic_bce_clean_balanced", epochs=2, class_weight=None)):
        configure_tf(seed=7, deterministic=True, threads=1)
        history = fit(build_model(cfg, x.shape[1:]), cfg, train, val, seed=7)
        assert len(history.history["val_loss"]) == 2
    n, positives = 90, int(y[:90].sum())
    weights = {0: n / (2 * (n - positives)), 1: n / (2 * positives)}
    assert seen == [pytest.approx(weights, rel=1e-6), None]


def bce(y: np.ndarray, prob: np.ndarray) -> np.ndarray:
    """Keras's binary cross-entropy per row (probabilities clipped to [1e-7, 1 - 1e-7])."""
    p = np.clip(prob.astype(np.float64), 1e-7, 1 - 1e-7)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


@pytest.mark.parametrize("class_weight", ["balanced", {0: 0.5, 1: 4.0}, None])
def test_val_loss_weighs_the_val_rows_by_the_training_class_weights(variant, class_weight):
    """val_loss (what early stopping and the checkpoints watch) is the loss that is trained:
    each val row weighed by its class's weight from the train labels, summed over the rows
    and divided by their count (Keras's sum_over_batch_size, as its training loss); checked
    against numpy on the trained model's val probabilities."""
    rows = thoracic_rows(120, 4)
    x, y = rows[:, :-1].astype(np.float32), rows[:, -1].astype(np.int64)
    train, val = (x[:90], y[:90]), (x[90:], y[90:])
    cfg = variant("thoracic_bce_clean_balanced", epochs=1, class_weight=class_weight)
    configure_tf(seed=7, deterministic=True, threads=1)
    model = build_model(cfg, x.shape[1:])
    history = fit(model, cfg, train, val, seed=7)
    prob = keras.ops.convert_to_numpy(model(val[0], training=False))[:, 0]
    weights = class_weights(cfg, train[1]) or {0: 1.0, 1: 1.0}
    w = np.array([weights[int(c)] for c in val[1]])
    expected = float(np.sum(w * bce(val[1], prob)) / len(w))
    assert history.history["val_loss"][0] == pytest.approx(expected, rel=1e-5)
    if class_weight is not None:  # the unweighted mean: what val_loss was before
        assert abs(float(np.mean(bce(val[1], prob))) - expected) > 0.01


def test_the_thread_count_changes_no_weight():
    """train.threads is no dependency of any stage (dvc.yaml): 1 and 2 threads train the
    same weights, bit for bit. One training here (TF's pools as tests/conftest.py set them,
    train.threads), the other in a fresh process with the other count."""
    import subprocess
    import sys

    import tensorflow as tf

    from study.config.paths import REPO_ROOT

    here = tf.config.threading.get_intra_op_parallelism_threads()
    assert here == tf.config.threading.get_inter_op_parallelism_threads()
    other = 2 if here == 1 else 1
    fresh = subprocess.run(
        [sys.executable, threads_probe.__file__, str(other)], cwd=REPO_ROOT,
        env=pipeline_env(PYTHONPATH=str(REPO_ROOT)), capture_output=True, text=True, check=True,
        timeout=300,
    ).stdout.split()[-1]  # fmt: skip
    assert threads_probe.trained_digest(here) == fresh
