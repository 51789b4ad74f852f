"""One training of the real `dropout` variant's model (Dense 64, Dropout, L2, L1, MaxNorm) on
random rows, and the sha256 of its weights: in this process (whose TF thread pools are set),
or in a fresh one with another thread count (`python tests/training/threads_probe.py N`, the
repository on PYTHONPATH): TF's thread pools are fixed once its runtime starts.

One epoch of 600 rows (20 steps of the variant's 30 rows) runs every op of a training at the
study's batch size: what a thread count could change is an op's reduction order, the same in
every step and epoch (3000 rows and 2 epochs proved no more)."""

from __future__ import annotations

import hashlib
import sys

import numpy as np


def trained_digest(threads: int) -> str:
    import keras

    from study.config.params import load_params
    from study.training.fitting import configure_tf, fit
    from study.training.model import build_model

    keras.backend.clear_session()  # as in a fresh process (the layers' seed generators)
    cfg = load_params().variant("dropout").model_copy(update={"epochs": 1})
    configure_tf(42, True, threads)
    rng = np.random.default_rng(0)
    x, y = rng.random((600, 28, 28), dtype=np.float32), rng.integers(0, 10, 600)
    model = build_model(cfg, x.shape[1:])
    fit(model, cfg, (x, y), (x[:300], y[:300]), seed=42)
    return hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest()


if __name__ == "__main__":
    print(trained_digest(int(sys.argv[1])))
