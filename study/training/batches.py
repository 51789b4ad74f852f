"""Training batches for NumPy arrays: reshuffled every epoch, all epochs through one
iterator, and without TensorFlow's spurious "E0000 ... NodeDef mentions attribute
use_unbounded_threadpool" error line.

Reshuffled: Keras's own NumPy path shuffles with tf.random.shuffle inside the dataset and
makes a new iterator every epoch; with a global seed set (keras.utils.set_random_seed, which
the study calls) every new iterator replays the same permutation, so every epoch trains on
the same batches (TensorFlow issue #35682; tests/training/test_batches.py shows Keras 3.15
doing it). Here the permutation is a stateless function of (seed, epoch): each epoch its
own order, the same after a resume from a backup, the same in every process.

One iterator: the dataset holds the epochs one after the other, and fit's steps_per_epoch
cuts them, so Keras keeps one iterator for the whole fit instead of making two per epoch
(it makes the next one at an epoch's end, then another at the next epoch's start), ~20 ms
each. Every op in it is stateless, so op determinism's tf.data rewrite leaves its prefetch
and parallel map alone (an epoch read from a tf.Variable instead made the whole pipeline
synchronous: ~15 % more wall time for a softmax regression's fit, measured).

The error line: Keras's pipeline builds the last partial batch with Dataset.from_tensors
inside a flat_map. Under enable_op_determinism (our `deterministic`), tf.data's
make_deterministic rewrite counts that TensorDataset as nondeterministic, makes the whole
pipeline synchronous, and turns the ParallelMapDatasetV2 into a MapDataset that keeps its
use_unbounded_threadpool attribute, which MapDataset does not define: TF logs an error,
although nothing failed (a TensorFlow 2.21 bug: ConvertMapOrInterleave erases only
`deterministic` and `sloppy`). Building the partial batch with from_tensor_slices avoids
the rewrite.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def epoch_batches(
    arrays: tuple[np.ndarray, ...], batch_size: int, seed: int, first_epoch: int, epochs: int
) -> Any:
    """The training batches of epochs first_epoch .. epochs - 1, one after the other, for
    model.fit with steps_per_epoch=steps(len(rows), batch_size) (Keras then keeps one iterator
    for the whole fit): each epoch the rows batch_size at a time (its last batch partial), in
    a stateless permutation of (seed, epoch)."""
    import tensorflow as tf

    arrays = _floatx(arrays)
    n = len(arrays[0])
    full = n - n % batch_size

    def batch_indices(epoch: Any) -> Any:
        key = tf.stack([tf.constant(seed, tf.int64), epoch])
        indices = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), key)
        ds = tf.data.Dataset.from_tensor_slices(tf.reshape(indices[:full], [-1, batch_size]))
        if n > full:
            last = tf.reshape(indices[full:], [1, n - full])
            ds = ds.concatenate(tf.data.Dataset.from_tensor_slices(last))
        return ds

    indices = tf.data.Dataset.range(first_epoch, epochs).flat_map(batch_indices)
    data = tf.data.Dataset.from_tensors(arrays).repeat()
    ds = tf.data.Dataset.zip((indices, data)).map(
        lambda i, data: tuple(tf.gather(a, i, axis=0) for a in data),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def steps(rows: int, batch_size: int) -> int:
    """Batches per epoch: the last one partial."""
    return -(-rows // batch_size)


def eval_batches(arrays: tuple[np.ndarray, ...], batch_size: int) -> Any:
    """Validation batches: the rows in order, batch_size at a time. Keras's evaluate makes a
    new iterator for every epoch's validation; this plain pipeline's costs ~1 ms to make,
    a shuffling one's ~20 ms (measured, bench/stage_costs.py's notes in
    docs/performance.md)."""
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices(_floatx(arrays)).batch(batch_size)


def _floatx(arrays: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """Float arrays in Keras's floatx, as Keras's own adapters cast them; others as they are."""
    import keras

    floatx = keras.config.floatx()
    return tuple(a.astype(floatx, copy=False) if a.dtype.kind == "f" else a for a in arrays)
