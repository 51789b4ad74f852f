"""Hidden-unit diagnostics: dead ReLU units, saturated tanh/sigmoid units, first-layer gradient.

Pure functions (no I/O, no MLflow) over models built by study.training.model.build_model,
whose hidden Dense layers are named hidden_1, hidden_2, ... Thresholds are arguments: the
caller reads them from params.yaml.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from study.config.variant import Variant

DEAD_ACTIVATIONS = ("relu", "leaky_relu")
SATURATING_ACTIVATIONS = ("tanh", "sigmoid")


def hidden_layers(model: Any) -> list[Any]:
    """The model's hidden Dense layers (hidden_1, hidden_2, ...), in order."""
    return [layer for layer in model.layers if layer.name.startswith("hidden_")]


def hidden_activations(model: Any, x: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Post-activation outputs (n, units) of each hidden layer, in inference mode (no dropout)."""
    return predict_with_activations(model, x, batch_size)[1]


def predict_with_activations(
    model: Any, x: np.ndarray, batch_size: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    """The model's outputs on x and each hidden layer's activations, from one predict: the
    same numbers as model.predict and a probe of the hidden layers alone (bit for bit on
    every variant of the study here), one graph traced instead of two."""
    import keras

    layers = hidden_layers(model)
    if not layers:
        return model.predict(x, batch_size=batch_size, verbose=0), []
    probe = keras.Model(
        inputs=model.inputs, outputs=[layer.output for layer in layers] + model.outputs
    )
    *acts, outputs = probe.predict(x, batch_size=batch_size, verbose=0)
    return np.asarray(outputs), [np.asarray(a) for a in acts]


def dead_fraction(acts: np.ndarray) -> float:
    """Fraction of units (columns) whose activation is never > 0 over all rows of `acts`.

    Works for relu and leaky_relu alike: leaky_relu is negative exactly where its
    pre-activation is, so "output never > 0" means "pre-activation never positive".
    """
    return float(np.mean(~np.any(acts > 0, axis=0)))


def saturation_bounds(activation: str, level: float) -> tuple[float, float]:
    """(low, high): an activation value is saturated when it is < low or > high.

    tanh: |a| > level; sigmoid: a < 1 - level or a > level. ValueError for other activations.
    """
    if not 0 < level < 1:
        raise ValueError(f"saturation level must be in (0, 1), got {level}")
    if activation == "tanh":
        return -level, level
    if activation == "sigmoid":
        return 1 - level, level
    raise ValueError(f"saturation is defined for {SATURATING_ACTIVATIONS}, not {activation!r}")


def saturated_fraction(acts: np.ndarray, activation: str, level: float) -> float:
    """Fraction of activations (all (row, unit) values, not units) in the saturated range."""
    low, high = saturation_bounds(activation, level)
    return float(np.mean((acts < low) | (acts > high)))


def first_layer_gradient_norm(model: Any, x: np.ndarray, y_encoded: np.ndarray, loss: str) -> float:
    """L2 norm of d(loss)/d(hidden_1 kernel) on the batch (x, y_encoded), training=False.

    The loss is the data loss alone (keras.losses.get(loss) averaged over the batch), without
    the model's regularization penalties, so regularized variants compare on the same term.
    """
    import keras
    import tensorflow as tf

    kernel = model.get_layer("hidden_1").kernel
    with tf.GradientTape() as tape:
        pred = model(x, training=False)
        value = keras.ops.mean(keras.losses.get(loss)(y_encoded, pred))
    return float(tf.norm(tape.gradient(value, kernel)))


def diagnose(
    model: Any,
    cfg: Variant,
    x: np.ndarray,
    y_encoded: np.ndarray,
    batch_size: int,
    level: float,
    acts: list[np.ndarray] | None = None,
) -> tuple[dict[str, float], list[np.ndarray]]:
    """Diagnostics of a variant (cfg: depth, activation, loss); {} without hidden layers.

    dead_fraction (relu, leaky_relu) or saturated_fraction (tanh, sigmoid) per hidden layer
    ("<name>/hidden_<i>") and over all hidden units of all layers ("<name>"), plus
    first_layer_grad_norm on the fixed batch x[:batch_size], y_encoded[:batch_size]; and the
    hidden activations on x (for activation_histograms): `acts` when the caller has them.
    """
    if cfg.depth == 0:
        return {}, []
    activation, out = cfg.activation, {}
    if acts is None:
        acts = hidden_activations(model, x, batch_size)
    if activation in DEAD_ACTIVATIONS + SATURATING_ACTIVATIONS:
        dead = activation in DEAD_ACTIVATIONS
        name = "dead_fraction" if dead else "saturated_fraction"
        saturated = partial(saturated_fraction, activation=activation, level=level)
        fn = dead_fraction if dead else saturated
        out = {f"{name}/hidden_{i}": fn(a) for i, a in enumerate(acts, start=1)}
        out[name] = fn(np.concatenate(acts, axis=1))  # over all hidden units of all layers
    batch = (x[:batch_size], y_encoded[:batch_size])  # fixed: the test split's first rows
    out["first_layer_grad_norm"] = first_layer_gradient_norm(model, *batch, cfg.loss)
    return out, acts


def activation_histograms(
    acts: list[np.ndarray], activation: str, title: str, level: float
) -> Figure:
    """One panel per hidden layer: histogram of its activations (log counts), thresholds marked.

    Dead threshold 0 for relu/leaky_relu, saturation bounds at `level` for tanh/sigmoid.
    """
    if not acts:
        raise ValueError("no hidden layers to plot")
    units = [a.shape[1] for a in acts]
    acts = [a[np.isfinite(a)] for a in acts]  # a diverged model's NaNs have no bin
    if activation in SATURATING_ACTIVATIONS:
        lines = saturation_bounds(activation, level)
    else:
        lines = (0.0,) if activation in DEAD_ACTIVATIONS else ()
    fig = Figure(figsize=(4 * len(acts), 3.5))
    axes = fig.subplots(1, len(acts), squeeze=False)[0]
    for i, (ax, a, n) in enumerate(zip(axes, acts, units, strict=True), start=1):
        counts, edges = np.histogram(a, bins=100)
        ax.stairs(counts, edges, fill=True)  # one artist, not 100 bars: drawn in a fraction
        ax.set_yscale("log")
        for v in lines:
            ax.axvline(v, color="red", linestyle="--", linewidth=1)
        ax.set_title(f"hidden_{i} ({n} units)")
        ax.set_xlabel(f"{activation} activation")
        ax.set_ylabel("count (log)")
    fig.suptitle(title)
    # Fixed margins: tight_layout's search costs as much as drawing the figure.
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.14, top=0.82, wspace=0.25)
    return fig
