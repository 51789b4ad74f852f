"""Recompute the evaluate stage's new metrics independently, from the saved models' weights.

  python -m bench.check_metrics     # after `make repro`, in the repository

For every variant's best model on the prepared test split: the data loss with scikit-learn
on the model's predictions, the regularization penalty and the activation diagnostics with
NumPy from the weights (a forward pass by hand), compared with metrics/<variant>.json.
Prints one line per variant and the largest difference per metric.
"""

from __future__ import annotations

import json

import numpy as np

from stages.formats import load_split, split_path
from stages.params import (
    METRICS_DIR,
    MODELS_DIR,
    PREPARED_DIR,
    REPO_ROOT,
    load_params,
    resolve_all_variants,
)

ACT = {
    "relu": lambda z: np.maximum(z, 0),
    "leaky_relu": lambda z: np.where(z > 0, z, 0.2 * z),  # Keras's default slope
    "tanh": np.tanh,
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
}


def data_loss(cfg: dict, y: np.ndarray, out: np.ndarray) -> float:
    from sklearn.metrics import log_loss, mean_absolute_error, mean_squared_error

    if cfg["loss"] in ("sparse_categorical_crossentropy", "categorical_crossentropy"):
        return log_loss(y, out, labels=list(range(out.shape[1])))
    p = out.reshape(-1)
    if cfg["loss"] == "binary_crossentropy":
        return log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1])
    if cfg["loss"] == "mean_squared_error":
        return mean_squared_error(y, p)
    if cfg["loss"] == "mean_absolute_error":
        return mean_absolute_error(y, p)
    return float("nan")  # msle, mape, poisson: not recomputed here


def by_hand(model, cfg: dict, x: np.ndarray, eval_cfg: dict) -> dict[str, float]:
    """Penalty and diagnostics from the weights, with NumPy."""
    dense = [layer for layer in model.layers if layer.name.startswith("hidden_")]
    a = x.reshape(len(x), -1).astype(np.float64)
    acts, l2 = [], 0.0
    for layer in dense:
        kernel, bias = (np.asarray(w, dtype=np.float64) for w in layer.get_weights())
        a = ACT[cfg["activation"]](a @ kernel + bias)
        acts.append(a)
        l2 += cfg["kernel_l2"] * float(np.sum(kernel**2))
    # Keras's L1 activity term of a batch is l1 * sum|a| / batch size: per row, whatever
    # the batch, so its mean over the test batches is l1 * sum|a| / n over the whole split.
    l1 = cfg["activity_l1"] * sum(float(np.sum(np.abs(h))) for h in acts) / len(x)
    found = {"penalty": l2 + l1}
    if acts and cfg["activation"] in ("relu", "leaky_relu"):
        units = np.concatenate([(h > 0).any(axis=0) for h in acts])
        found["dead_fraction"] = float(1 - units.mean())
    if acts and cfg["activation"] in ("tanh", "sigmoid"):
        level = eval_cfg["diagnostics"]["saturation"]
        values = np.concatenate([h.ravel() for h in acts])
        flat = (
            np.abs(values) > level
            if cfg["activation"] == "tanh"
            else ((values < 1 - level) | (values > level))
        )
        found["saturated_fraction"] = float(flat.mean())
    return found


def main() -> None:
    import keras

    params = load_params()
    worst: dict[str, float] = {}
    for name, cfg in resolve_all_variants(params).items():
        x, y = load_split(split_path(REPO_ROOT / PREPARED_DIR, "test", cfg["dataset"]))
        model = keras.saving.load_model(REPO_ROOT / MODELS_DIR / name / "best.keras")
        reported = json.loads((REPO_ROOT / METRICS_DIR / f"{name}.json").read_text())["best"]
        mine = {"loss": data_loss(cfg, y, model.predict(x, verbose=0, batch_size=1024))}
        mine |= by_hand(model, cfg, x, params["evaluate"])
        parts = []
        for key, value in mine.items():
            if key in reported and not np.isnan(value):
                diff = abs(value - reported[key])
                worst[key] = max(worst.get(key, 0.0), diff)
                parts.append(f"{key} {reported[key]:.6f} vs {value:.6f}")
        print(f"{name}: " + "; ".join(parts))
    print(
        "largest |reported - independent|: " + ", ".join(f"{k} {v:.2e}" for k, v in worst.items())
    )


if __name__ == "__main__":
    main()
