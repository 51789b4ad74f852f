"""Build and compile a Keras model from a variant's config (pure: no I/O), and the label and
output forms of its head."""

from __future__ import annotations

import inspect
from typing import Any

import keras
import numpy as np

from study.config.errors import StageError
from study.config.variant import N_CLASSES, Variant
from study.io.splits import RawInput

OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "sgd": keras.optimizers.SGD,
    "rmsprop": keras.optimizers.RMSprop,
    "adamw": keras.optimizers.AdamW,
    "nadam": keras.optimizers.Nadam,
}
SCHEDULES = {
    "exponential_decay": keras.optimizers.schedules.ExponentialDecay,
    "cosine_decay_restarts": keras.optimizers.schedules.CosineDecayRestarts,
}


def one_hot_labels(cfg: Variant) -> bool:
    """Categorical crossentropy trains on one-hot labels; the other losses on 0/1 or ints."""
    return cfg.loss == "categorical_crossentropy"


def binary(dataset: str) -> bool:
    """Two classes (the thoracic datasets): AUC, balanced accuracy, a decision threshold."""
    return N_CLASSES[dataset] == 2


def sigmoid_head(cfg: Variant) -> bool:
    """Binary data with a non-categorical loss gets one sigmoid unit; otherwise softmax."""
    return binary(cfg.dataset) and not one_hot_labels(cfg)


def encode_labels(y: np.ndarray, cfg: Variant) -> np.ndarray:
    """Labels in the form the variant's loss expects."""
    if one_hot_labels(cfg):
        return np.eye(N_CLASSES[cfg.dataset], dtype=np.float32)[y]
    if sigmoid_head(cfg):
        return y.astype(np.float32).reshape(-1, 1)
    return y


def class_probabilities(probs: np.ndarray, cfg: Variant) -> np.ndarray:
    """Model outputs as an (n, n_classes) probability matrix, whatever the head."""
    if sigmoid_head(cfg):
        p = probs.reshape(-1)
        return np.stack([1 - p, p], axis=1)
    return probs


def _accuracy(cfg: Variant) -> keras.metrics.Metric:
    # Named "accuracy" for every head, so histories and MLflow metrics line up.
    if sigmoid_head(cfg):
        return keras.metrics.BinaryAccuracy(name="accuracy")
    if one_hot_labels(cfg):
        return keras.metrics.CategoricalAccuracy(name="accuracy")
    return keras.metrics.SparseCategoricalAccuracy(name="accuracy")


def make_optimizer(cfg: Variant) -> keras.optimizers.Optimizer:
    """Optimizer from cfg.optimizer (only the arguments it sets: Keras' defaults for the rest);
    an lr_schedule replaces its learning_rate, starting from it unless the schedule gives
    its own initial_learning_rate."""
    opt = cfg.optimizer.model_dump(exclude_unset=True)
    cls = OPTIMIZERS[opt.pop("name")]
    if cfg.lr_schedule is not None:
        sched = cfg.lr_schedule.model_dump(exclude_unset=True)
        if sched.get("initial_learning_rate") is None:
            start = opt.get("learning_rate")
            if start is None:  # the optimizer's own default, as Keras would use it
                start = inspect.signature(cls).parameters["learning_rate"].default
            sched["initial_learning_rate"] = start
        opt["learning_rate"] = SCHEDULES[sched.pop("name")](**sched)
    return cls(**opt)


def build_model(
    cfg: Variant, input_shape: tuple[int, ...], jit_compile: bool = False
) -> keras.Model:
    """Sequential MLP: [Flatten] -> depth x (Dense [+ Dropout]) -> sigmoid/softmax head, for
    examples of input_shape (the data's x.shape[1:]); its train, test and predict steps
    XLA-compiled if jit_compile (train.jit_compile; False is what Keras picks on a CPU)."""
    shape = tuple(input_shape)
    layers: list[keras.layers.Layer] = [keras.Input(shape)]
    if len(shape) > 1:
        layers.append(keras.layers.Flatten())
    rates = cfg.dropout if isinstance(cfg.dropout, list) else [cfg.dropout] * cfg.depth
    for i in range(cfg.depth):
        layers.append(
            keras.layers.Dense(
                cfg.units,
                activation=cfg.activation,
                kernel_regularizer=keras.regularizers.L2(cfg.kernel_l2) if cfg.kernel_l2 else None,
                activity_regularizer=(
                    keras.regularizers.L1(cfg.activity_l1) if cfg.activity_l1 else None
                ),
                kernel_constraint=keras.constraints.MaxNorm(cfg.max_norm) if cfg.max_norm else None,
                name=f"hidden_{i + 1}",
            )
        )
        if rates[i]:
            layers.append(keras.layers.Dropout(rates[i], name=f"dropout_{i + 1}"))
    if sigmoid_head(cfg):
        layers.append(keras.layers.Dense(1, activation="sigmoid", name="output"))
    else:
        layers.append(
            keras.layers.Dense(N_CLASSES[cfg.dataset], activation="softmax", name="output")
        )
    model = keras.Sequential(layers, name=cfg.dataset)
    model.compile(
        optimizer=make_optimizer(cfg),
        loss=cfg.loss,
        metrics=[_accuracy(cfg)],
        steps_per_execution=cfg.steps_per_execution,
        jit_compile=False,  # not "auto": the same steps on every machine
    )
    # Keras (3.15) would build the optimizer's slots inside the first traced train step, and
    # TF then traces that step again to lift them out. Built here, that retrace goes: the
    # same weights bit for bit; fit of a thoracic-sized MLP, median of 5: 1.43 -> 1.28 s.
    model.optimizer.build(model.trainable_variables)
    if jit_compile:
        _xla_steps(model)
    return model


def _xla_steps(model: keras.Model) -> None:
    """XLA-compiled steps, also under TF's op determinism, which Keras (3.15,
    trainers/trainer.py: model_supports_jit) refuses with a warning because some XLA ops
    have no deterministic GPU kernel. Measured on CPU: repeated and resumed trainings stay
    bit-identical (tests/training/test_xla.py). Compiled with False, then set: a saved
    model's compile config says False and loads without the warning."""
    from tensorflow.python.framework.config import is_op_determinism_enabled

    if not is_op_determinism_enabled():
        model.jit_compile = True  # Keras' own setter
        return
    if not keras.version().startswith("3.") or not hasattr(model, "_jit_compile"):
        raise StageError(
            f"train.jit_compile: Keras {keras.version()} may not keep XLA under op determinism"
            " (tested with 3.15); set train.jit_compile: false"
        )
    model._jit_compile = True  # what the setter stores when Keras allows it


RAW_PREFIX = "raw_"  # the preprocessing layers' names: what tells a model taking raw input


def raw_input_model(trained: keras.Model, raw: RawInput) -> keras.Model:
    """The trained model behind Keras' own preprocessing layers (prepare's, fitted on the
    train rows): it takes raw examples (raw.shape, raw.dtype) and gives the trained model's
    outputs. The trained layers are reused as they are (hidden_1, ... stay top-level layers,
    for the diagnostics); built-in layers only, so it loads with safe_mode anywhere.

    Pixels: Normalization with mean 0 and variance scale², i.e. x / scale, as prepare
    divides. Table: each one-hot column picked by a fixed Dense (a 0/1 kernel) and matched
    by a Discretization with the bins [v, the next float after v) (only v itself falls in
    one: an unseen value is all 0, as in prepare); the encoded columns in prepare's order by
    a second fixed Dense; then Normalization with prepare's mean and variance std².
    """
    inputs = keras.Input(raw.shape, dtype=raw.dtype, name=f"{RAW_PREFIX}input")
    x = inputs
    if raw.scale is not None:
        scale = keras.layers.Normalization(
            axis=None, mean=0.0, variance=raw.scale**2, name=f"{RAW_PREFIX}scale"
        )
        x = scale(x)
    if raw.columns is not None:
        x = _encode_columns(x, raw)
    if raw.mean is not None:
        variance = (np.float64(raw.std) ** 2).tolist()
        standardize = keras.layers.Normalization(
            mean=raw.mean, variance=variance, name=f"{RAW_PREFIX}standardize"
        )
        x = standardize(x)
    for layer in trained.layers:
        x = layer(x)
    return keras.Model(inputs, x, name=trained.name)


def takes_raw_input(model: keras.Model) -> bool:
    """Whether the model was made by raw_input_model (its first layer is the raw input)."""
    return model.layers[0].name.startswith(RAW_PREFIX)


def _select(x: Any, kernel: np.ndarray, name: str) -> Any:
    """x @ kernel by a Dense that training never changes: a 0/1 kernel picks columns
    exactly (x * 1 plus zeros)."""
    dense = keras.layers.Dense(kernel.shape[1], use_bias=False, trainable=False, name=name)
    out = dense(x)
    dense.set_weights([kernel])
    return out


def _encode_columns(x: Any, raw: RawInput) -> Any:
    """The raw table's encoded columns (before standardizing), in prepare's order."""
    n_raw = raw.shape[-1]
    wide, where = [x], []  # the columns of concat(wide) that become the encoded ones
    offset = n_raw
    for col in raw.columns:
        if col.values is None:
            where.append(col.column)
            continue
        pick = np.zeros((n_raw, 1), np.float32)
        pick[col.column, 0] = 1.0
        values = np.asarray(col.values, np.float32)
        bounds = np.stack([values, np.nextafter(values, np.float32(np.inf))], axis=1)
        bins = keras.layers.Discretization(
            bin_boundaries=bounds.ravel().tolist(),
            output_mode="one_hot",
            name=f"{RAW_PREFIX}one_hot_{col.column}",
        )
        wide.append(bins(_select(x, pick, f"{RAW_PREFIX}column_{col.column}")))
        where += [offset + 2 * i + 1 for i in range(len(values))]  # bin i+1: v_i itself
        offset += 2 * len(values) + 1
    if len(wide) > 1:
        x = keras.layers.Concatenate(name=f"{RAW_PREFIX}wide")(wide)
    if where == list(range(offset)):
        return x  # every column as it is
    select = np.zeros((offset, len(where)), np.float32)
    select[where, np.arange(len(where))] = 1.0
    return _select(x, select, f"{RAW_PREFIX}encoded")
