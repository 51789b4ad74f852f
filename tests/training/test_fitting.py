"""study.training.fitting: every training's class weights, as Keras's fit gets them."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conftest import thoracic_rows

from study.training.fitting import class_weights, configure_tf, fit
from study.training.model import build_model


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
        history = fit(build_model(cfg, x.shape[1:]), cfg, train, val)
        assert len(history.history["val_loss"]) == 2
    n, positives = 90, int(y[:90].sum())
    weights = {0: n / (2 * (n - positives)), 1: n / (2 * positives)}
    assert seen == [pytest.approx(weights, rel=1e-6), None]
