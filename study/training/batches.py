"""Training batches for NumPy arrays, without TensorFlow's spurious "E0000 ... NodeDef
mentions attribute use_unbounded_threadpool" error line.

Keras feeds NumPy arrays through a tf.data pipeline whose last partial batch comes from
Dataset.from_tensors inside a flat_map. Under enable_op_determinism (our `deterministic`),
tf.data's make_deterministic rewrite counts that TensorDataset as nondeterministic, makes
the whole pipeline synchronous, and turns the ParallelMapDatasetV2 into a MapDataset that
keeps its use_unbounded_threadpool attribute, which MapDataset does not define: TF logs an
error, although nothing failed (a TensorFlow 2.21 bug: ConvertMapOrInterleave erases only
`deterministic` and `sloppy`). Building the partial batch with from_tensor_slices avoids
the rewrite; the rest is Keras's own pipeline (same shuffle ops, same op seeds), so training
is bit-identical (tests/training/test_batches.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def array_batches(arrays: tuple[np.ndarray, ...], batch_size: int, shuffle: bool) -> Any:
    """The tf.data pipeline Keras's ArrayDataAdapter builds for NumPy arrays (the same
    per-epoch tf.random.shuffle and batches: bit-identical training), except that the
    last partial batch comes from from_tensor_slices, not from_tensors.

    Under enable_op_determinism, tf.data's make_deterministic rewrite counts that
    TensorDataset (inside a flat_map) as nondeterministic, makes the whole pipeline
    synchronous, and turns ParallelMapDatasetV2 into a MapDataset that keeps its
    use_unbounded_threadpool attr: TF logs "E0000 ... NodeDef mentions attribute".
    """
    import keras
    import tensorflow as tf

    floatx = keras.config.floatx()
    arrays = tuple(a.astype(floatx, copy=False) if a.dtype.kind == "f" else a for a in arrays)
    n = len(arrays[0])
    full = n - n % batch_size

    def permutation(_: Any) -> Any:  # the same ops as Keras's: the same op seed
        indices = tf.range(n, dtype=tf.int64)
        if shuffle:
            indices = tf.random.shuffle(indices)
        return indices

    def batch_indices(indices: Any) -> Any:
        ds = tf.data.Dataset.from_tensor_slices(tf.reshape(indices[:full], [-1, batch_size]))
        if n > full:
            last = tf.reshape(indices[full:], [1, n - full])
            ds = ds.concatenate(tf.data.Dataset.from_tensor_slices(last))
        return ds

    indices = tf.data.Dataset.range(1).map(permutation).prefetch(1).flat_map(batch_indices)
    data = tf.data.Dataset.from_tensors(arrays).repeat()
    ds = tf.data.Dataset.zip((indices, data)).map(
        lambda i, data: tuple(tf.gather(a, i, axis=0) for a in data),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False
    options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.IGNORE
    ds = ds.with_options(options).apply(
        tf.data.experimental.assert_cardinality(-(-n // batch_size))
    )
    return ds.prefetch(tf.data.AUTOTUNE)


def eval_batches(arrays: tuple[np.ndarray, ...], batch_size: int) -> Any:
    """Validation batches: the rows in order, batch_size at a time (array_batches' without
    shuffling: the same batches, so the same val_loss). Keras's evaluate makes a new iterator
    for every epoch's validation; this plain pipeline's costs ~1 ms to make, array_batches'
    ~20 ms (measured, bench/stage_costs.py's notes in docs/performance.md)."""
    import keras
    import tensorflow as tf

    floatx = keras.config.floatx()
    arrays = tuple(a.astype(floatx, copy=False) if a.dtype.kind == "f" else a for a in arrays)
    return tf.data.Dataset.from_tensor_slices(arrays).batch(batch_size)
