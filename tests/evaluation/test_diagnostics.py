"""study.evaluation.diagnostics: dead and saturated units, first-layer gradient norm,
histograms."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from study.config.params import load_params
from study.config.variant import Variant
from study.evaluation.diagnostics import (
    activation_histograms,
    dead_fraction,
    diagnose,
    first_layer_gradient_norm,
    hidden_activations,
    saturated_fraction,
)
from study.training.model import build_model, encode_labels

N = 12
SHAPE = (28, 28)


def tiny_cfg(activation: str = "relu", **over) -> Variant:
    """act_relu shrunk to 2 hidden layers of 4 units, with dropout (off at inference)."""
    cfg = load_params().variant("act_relu").model_dump(exclude_unset=True)
    fields = {"activation": activation, "depth": 2, "units": 4, "dropout": 0.5, **over}
    return Variant.model_validate({**cfg, **fields})


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.random((N, *SHAPE), dtype=np.float32), np.arange(N) % 10


@pytest.fixture(scope="module")
def relu_model():
    keras.utils.set_random_seed(0)
    return build_model(tiny_cfg(), SHAPE)


def manual_forward(model, x):
    """Hidden activations and softmax output of the relu MLP, in numpy."""
    (w1, b1), (w2, b2) = (model.get_layer(f"hidden_{i}").get_weights() for i in (1, 2))
    w3, b3 = model.get_layer("output").get_weights()
    h1 = np.maximum(x.reshape(len(x), -1) @ w1 + b1, 0)
    h2 = np.maximum(h1 @ w2 + b2, 0)
    z = h2 @ w3 + b3
    p = np.exp(z - z.max(axis=1, keepdims=True))
    return h1, h2, p / p.sum(axis=1, keepdims=True)


def test_dead_fraction_counts_units_never_positive():
    acts = np.array([[0.0, 1.0, -0.2, 0.0], [-0.1, 0.0, 0.0, 3.0], [0.0, 2.0, -1.0, 0.0]])
    assert dead_fraction(acts) == 0.5  # units 0 and 2 (leaky: negative outputs) never > 0


def test_saturated_fraction_is_over_values():
    tanh = np.array([[0.995, -0.999, 0.5, 0.99], [0.0, -0.2, 1.0, -0.98]])
    assert saturated_fraction(tanh, "tanh", 0.99) == 3 / 8  # 0.99 itself is not saturated
    sigmoid = np.array([[0.005, 0.5, 0.995], [0.02, 0.999, 0.5]])
    assert saturated_fraction(sigmoid, "sigmoid", 0.99) == 3 / 6
    assert saturated_fraction(sigmoid, "sigmoid", 0.95) == 4 / 6
    with pytest.raises(ValueError, match=r"saturation level must be in \(0, 1\), got 1"):
        saturated_fraction(sigmoid, "sigmoid", 1)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "elu", "linear"])
def test_saturation_is_only_for_tanh_and_sigmoid(activation):
    with pytest.raises(ValueError, match=activation):
        saturated_fraction(np.zeros((2, 2)), activation, 0.99)


def test_hidden_activations_match_a_manual_forward_pass(relu_model, data):
    x, _ = data
    acts = hidden_activations(relu_model, x, batch_size=5)
    assert [a.shape for a in acts] == [(N, 4), (N, 4)]
    h1, h2, _ = manual_forward(relu_model, x)
    np.testing.assert_allclose(acts[0], h1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(acts[1], h2, rtol=1e-5, atol=1e-6)


def test_first_layer_gradient_norm_is_the_data_loss_gradient(relu_model, data):
    x, y = data
    norm = first_layer_gradient_norm(relu_model, x, y, "sparse_categorical_crossentropy")
    # Backprop of mean sparse crossentropy to hidden_1's kernel, by hand.
    h1, h2, p = manual_forward(relu_model, x)
    w2 = relu_model.get_layer("hidden_2").get_weights()[0]
    w3 = relu_model.get_layer("output").get_weights()[0]
    dz3 = (p - np.eye(10)[y]) / N
    dz2 = (dz3 @ w3.T) * (h2 > 0)
    dz1 = (dz2 @ w2.T) * (h1 > 0)
    expected = np.linalg.norm(x.reshape(N, -1).T @ dz1)
    assert norm > 0
    assert norm == pytest.approx(expected, rel=1e-4)
    # Penalties are not part of it: the same weights with L2 and L1 activity give the same norm.
    reg = build_model(tiny_cfg(kernel_l2=0.5, activity_l1=0.5), SHAPE)
    reg.set_weights(relu_model.get_weights())
    reg_norm = first_layer_gradient_norm(reg, x, y, "sparse_categorical_crossentropy")
    assert reg_norm == pytest.approx(norm, rel=1e-6)


def test_diagnose_reports_per_layer_and_overall(relu_model, data):
    x, y = data
    cfg = tiny_cfg()
    out, acts = diagnose(relu_model, cfg, x, encode_labels(y, cfg), batch_size=8, level=0.99)
    assert set(out) == {
        "dead_fraction/hidden_1",
        "dead_fraction/hidden_2",
        "dead_fraction",
        "first_layer_grad_norm",
    }
    h1, h2, _ = manual_forward(relu_model, x)
    np.testing.assert_allclose(acts[0], h1, rtol=1e-5, atol=1e-6)  # the histograms' input
    assert out["dead_fraction"] == dead_fraction(np.concatenate([h1, h2], axis=1))
    assert out["dead_fraction/hidden_2"] == dead_fraction(h2)
    grad = first_layer_gradient_norm(relu_model, x[:8], y[:8], cfg.loss)
    assert out["first_layer_grad_norm"] == pytest.approx(grad)
    elu = cfg.model_copy(update={"activation": "elu"})
    found, _ = diagnose(relu_model, elu, x, y, batch_size=8, level=0.99)
    assert set(found) == {"first_layer_grad_norm"}
    none = cfg.model_copy(update={"depth": 0})
    assert diagnose(None, none, x, y, batch_size=8, level=0.99) == ({}, [])


def test_diagnose_saturation_for_tanh(data):
    x, y = data
    cfg = tiny_cfg("tanh")
    out, acts = diagnose(build_model(cfg, SHAPE), cfg, x, y, batch_size=8, level=0.5)
    assert set(out) == {
        "saturated_fraction/hidden_1",
        "saturated_fraction/hidden_2",
        "saturated_fraction",
        "first_layer_grad_norm",
    }
    assert out["saturated_fraction/hidden_1"] == saturated_fraction(acts[0], "tanh", 0.5)
    assert all(0 <= v <= 1 for k, v in out.items() if k.startswith("saturated"))


def test_histograms_have_one_panel_per_hidden_layer_with_thresholds():
    acts = [np.linspace(-1, 1, 40).reshape(10, 4)] * 3
    fig = activation_histograms(acts, "tanh", "act_tanh", level=0.99)
    assert len(fig.axes) == 3
    xs = sorted(line.get_xdata()[0] for line in fig.axes[0].get_lines())
    assert xs == pytest.approx([-0.99, 0.99])
    assert fig.axes[0].get_yscale() == "log"
    assert fig.axes[0].get_title() == "hidden_1 (4 units)"
    (stairs,) = fig.axes[0].patches  # one artist per panel
    assert stairs.get_data().values.sum() == 40  # every value binned
    relu = activation_histograms(acts[:2], "relu", "act_relu", level=0.99)
    assert len(relu.axes) == 2
    assert [line.get_xdata()[0] for line in relu.axes[1].get_lines()] == [0.0]
    with pytest.raises(ValueError, match="no hidden layers"):
        activation_histograms([], "relu", "baseline", level=0.99)
