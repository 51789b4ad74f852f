"""Fitting a variant's compiled model as every training does: seeded TF, shuffled array
batches, labels in its loss's form, its class weights.

The train stage (validation, checkpoints, backups), cross-validation (one fit per fold) and the
search's trials share it, so a fold or a trial is trained exactly as the variant is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from keras.callbacks import Callback

from study.config.variant import Variant
from study.training.batches import epoch_batches, eval_batches, steps
from study.training.model import encode_labels


def configure_tf(seed: int, deterministic: bool, threads: int) -> None:
    """Seed every RNG; optionally make TF ops deterministic; pin the thread pools."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    # Measured: one thread is as fast as two for these small models (less contention).
    # Settable only before TF starts its runtime; a second call with the same value is a no-op.
    if threads and tf.config.threading.get_intra_op_parallelism_threads() != threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    if threads and tf.config.threading.get_inter_op_parallelism_threads() != threads:
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def class_weights(cfg: Variant, y: np.ndarray) -> dict[int, float] | None:
    """Keras's `class_weight` for the variant's field: None when unset (every row weighs 1),
    the mapping as given, or for `balanced` scikit-learn's n / (classes * count) of these
    labels (the classes present; Keras weighs an absent one 1)."""
    spec = cfg.class_weight
    if spec is None:
        return None
    if spec == "balanced":
        from sklearn.utils.class_weight import compute_class_weight

        present = np.unique(y)
        weights = compute_class_weight("balanced", classes=present, y=y)
        return {int(c): float(w) for c, w in zip(present, weights, strict=True)}
    return {int(c): float(w) for c, w in spec.items()}


def row_weights(weights: dict[int, float] | None, y: np.ndarray) -> np.ndarray | None:
    """Per-row weights of labels `y` under class weights (a class absent from the mapping
    weighs 1, as Keras weighs it); None without class weights."""
    if weights is None:
        return None
    return np.array([weights.get(int(c), 1.0) for c in y], dtype=np.float32)


def fit(
    model: Any,
    cfg: Variant,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray] | None = None,
    callbacks: Sequence[Any] = (),
    *,
    seed: int,
    initial_epoch: int = 0,
    end: int | None = None,
) -> Any:
    """model.fit from initial_epoch (where a restored backup resumes) to `end` (default
    cfg.epochs; resume.resume_end when the backed-up epoch had ended the training) on
    batches of `train` in an order of (seed, epoch), with the variant's class weights;
    val_loss on `val` when given, its rows weighed by the same class weights (those of the
    train labels), so early stopping and checkpoints watch the loss that is trained.
    Returns Keras's History."""
    batch = cfg.batch_size
    weights = class_weights(cfg, train[1])
    validation = None
    if val is not None:
        arrays = (val[0], encode_labels(val[1], cfg))
        val_weights = row_weights(weights, val[1])
        if val_weights is not None:  # Keras reads a third array as per-row loss weights
            arrays += (val_weights,)
        validation = eval_batches(arrays, batch)
    per_epoch = steps(len(train[0]), batch)
    execution = execution_steps(cfg.steps_per_execution, per_epoch)
    if model.steps_per_execution != execution:
        model.steps_per_execution = execution
        model.train_function = model.test_function = None  # traced for the other count
    end = cfg.epochs if end is None else end
    batches = epoch_batches(
        (train[0], encode_labels(train[1], cfg)), batch, seed, initial_epoch, end
    )
    return model.fit(
        batches,
        steps_per_epoch=per_epoch,
        validation_data=validation,
        epochs=end,
        initial_epoch=initial_epoch,
        shuffle=False,  # the batches are shuffled; Keras would warn that it ignores True
        class_weight=weights,
        callbacks=[*callbacks, _StartsAt(initial_epoch)],
        verbose=0,
    )


def execution_steps(configured: int, per_epoch: int) -> int:
    """The largest count of steps per execution, at most the configured one, that divides an
    epoch's steps. With one iterator for all epochs (epoch_batches) an execution would
    otherwise run on into the next epoch's batches: Keras 3.15 runs whole executions."""
    return max(d for d in range(1, min(configured, per_epoch) + 1) if per_epoch % d == 0)


class _StartsAt(Callback):
    """Fails clearly if Keras starts at another epoch than the batches do (e.g. a backup
    restored that the caller did not pass on as initial_epoch)."""

    def __init__(self, first_epoch: int) -> None:
        super().__init__()
        self.first_epoch = first_epoch
        self.started = False

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if not self.started and epoch != self.first_epoch:
            raise RuntimeError(
                f"fit: Keras starts at epoch {epoch}, the batches at {self.first_epoch}"
                " (pass the restored backup's epoch as initial_epoch)"
            )
        self.started = True
