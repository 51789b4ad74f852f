"""Build and compile a Keras model from a variant's config (pure: no I/O), and the label and
output forms of its head."""

from __future__ import annotations

import inspect

import keras
import numpy as np

from study.config.errors import StageError
from study.config.variant import N_CLASSES, Variant

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
