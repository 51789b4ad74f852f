"""study.training.model.raw_input_model: the saved models take raw examples (the CSV's 17
columns, uint8 images) through Keras' own layers, which give the trained layers prepare's
very inputs (study.data.prepare: fit_features, prepare_fashion); loaded with safe_mode."""

from __future__ import annotations

import keras
import numpy as np
from conftest import fashion_arrays, thoracic_rows

from study.config.sections import PrepareFashion, ThoracicFeatures
from study.data.prepare import apply_features, fit_features, prepare_fashion
from study.io.splits import RawInput
from study.training.model import build_model, raw_input_model, takes_raw_input


def saved_and_loaded(model: keras.Model, tmp_path) -> keras.Model:
    model.save(tmp_path / "m.keras")
    return keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)


def trained_inputs(model: keras.Model, raw: np.ndarray) -> np.ndarray:
    """What the model's first trained layer (hidden_1 or Flatten) receives from raw rows."""
    first = next(layer for layer in model.layers if not layer.name.startswith("raw_"))
    return keras.Model(model.inputs, first.input).predict(raw, verbose=0)


def test_thoracic_clean_rows_are_encoded_as_prepare_encodes_them(variant, tmp_path):
    """Column 0 dropped, column 1 one-hot (a code unseen in the train rows: all 0), the rest
    z-scored (a constant column too): bit for bit prepare's features, and the model's
    outputs on raw rows those of the trained model on prepare's features."""
    rows = thoracic_rows(120, 4)[:, :-1].astype(np.float32)
    rows[:, 1] = np.arange(120) % 4 + 1  # diagnosis codes 1..4
    rows[:, 5] = 2.0  # constant: std 1, not 0
    raw_test = rows[100:].copy()
    raw_test[:3, 1] = [9.0, 1.5, 4.0000005]  # unseen codes, one a float32 step above 4
    features = ThoracicFeatures(drop_columns=[0], one_hot_columns=[1], standardize=True)
    encoding = fit_features(rows[:100], features, "prepare.thoracic_clean")
    expected = apply_features(raw_test, encoding)
    assert expected.shape == (20, 16 - 1 + 4)
    assert not expected[:3, :4].any() and expected[3:, :4].sum(axis=1).tolist() == [1.0] * 17

    cfg = variant("thoracic_bce", depth=2, units=8)
    trained = build_model(cfg, expected.shape[1:])
    model = saved_and_loaded(raw_input_model(trained, encoding), tmp_path)
    assert takes_raw_input(model) and not takes_raw_input(trained)
    assert model.inputs[0].shape == (None, 17) and model.inputs[0].dtype == "float32"
    np.testing.assert_array_equal(trained_inputs(model, raw_test), expected)
    np.testing.assert_allclose(
        model.predict(raw_test, verbose=0), trained.predict(expected, verbose=0), atol=1e-6
    )
    assert [layer.name for layer in model.layers if layer.name.startswith("hidden_")] == [
        "hidden_1",
        "hidden_2",
    ]  # top-level: evaluate's diagnostics probe them


def test_uint8_images_become_prepares_scaled_pixels(variant, tmp_path):
    images, labels = fashion_arrays(60, 1)
    arrays = {"train_x": images, "train_y": labels, "test_x": images[:20], "test_y": labels[:20]}
    cfg = PrepareFashion(val_fraction=0.25, validate_on_test=False, max_train=None, max_test=None)
    split, extra = prepare_fashion(arrays, cfg, seed=0)
    encoding = RawInput.model_validate_json(str(extra["train"]["raw_input"]))
    raw_test = extra["test"]["raw_x"]
    assert raw_test.dtype == np.uint8 and raw_test.shape == (20, 28, 28)
    trained = build_model(variant("baseline"), (28, 28))
    model = saved_and_loaded(raw_input_model(trained, encoding), tmp_path)
    assert model.inputs[0].dtype == "uint8"
    np.testing.assert_array_equal(trained_inputs(model, raw_test), split["test"][0])
    np.testing.assert_allclose(
        model.predict(raw_test, verbose=0),
        trained.predict(split["test"][0], verbose=0),
        atol=1e-6,
    )
