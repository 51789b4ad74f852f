"""Recompute the pipeline's metrics independently: scikit-learn and NumPy on the saved models'
predictions, compared with metrics/<variant>.json and metrics/crossval/<variant>.json.

  python -m bench.check_metrics                # after `make repro`, in the repository
  python -m bench.check_metrics --root REPO    # another copy of it

Per variant (params.yaml's and the searched one, each of its seeds), none of the pipeline's
scoring code is used: its best and last models (models/<variant>/, seed<S>/) predict the
prepared test split; accuracy, the data loss (scikit-learn's log_loss, mean_squared_error,
mean_absolute_error or mean_squared_log_error, by the variant's loss; the MAPE and Poisson
losses are not recomputed) and for the binary datasets AUC and balanced accuracy; the
regularization penalty and the hidden units' diagnostics by hand from the weights (a NumPy
forward pass); the spread across seeds with the statistics module; and from best.keras on the
val split best_val_loss (data loss + penalty: what Keras' val_loss adds up) and
best_val_accuracy. Keras' val figures are a streaming float32 mean over batches, these a
full-batch float64 computation: they agree within VAL_TOLERANCE, not to the last digit.
Cross-validation (crossval.variants, bench/check_crossval.py): the folds redrawn with
scikit-learn's RepeatedStratifiedKFold on the train + val rows, the logistic reference
refitted and the majority class counted on each, their mean and sd with the statistics module;
the network's folds are not refitted (its figures are only checked to be there).
One line per variant, the largest difference per metric, and a final summary line (the
tolerances: bench/metric_diffs.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench.check_crossval import check_crossval
from bench.metric_diffs import EXACT, TOLERANCE, VAL_TOLERANCE, Diffs
from study.config.params import load_params
from study.config.paths import METRICS_DIR, MODELS_DIR, PREPARED_DIR, REPO_ROOT, split_path
from study.io.splits import load_raw_x, load_split
from study.training.model import RAW_PREFIX

ACT = {
    "relu": lambda z: np.maximum(z, 0),
    "leaky_relu": lambda z: np.where(z > 0, z, 0.2 * z),  # Keras' default slope
    "tanh": np.tanh,
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
}


def probabilities(out: np.ndarray) -> np.ndarray:
    """(n, classes) class probabilities from a sigmoid (one column) or softmax head."""
    out = out.astype(np.float64)
    if out.shape[1] == 1:
        return np.hstack([1 - out, out])
    return out / out.sum(axis=1, keepdims=True)


def data_loss(loss: str, y: np.ndarray, out: np.ndarray) -> float | None:
    """The variant's loss on the predictions, with scikit-learn; None where not recomputed."""
    from sklearn.metrics import (
        log_loss,
        mean_absolute_error,
        mean_squared_error,
        mean_squared_log_error,
    )

    if not np.isfinite(out).all():
        return None
    if loss in ("sparse_categorical_crossentropy", "categorical_crossentropy"):
        probs = out.astype(np.float32)  # clipped at float32's eps, near Keras' 1e-7
        return log_loss(y, probs / probs.sum(axis=1, keepdims=True), labels=range(out.shape[1]))
    p = out.reshape(-1).astype(np.float32)
    if loss == "binary_crossentropy":
        return log_loss(y, p, labels=[0, 1])
    if loss == "mean_squared_error":
        return mean_squared_error(y, p)
    if loss == "mean_absolute_error":
        return mean_absolute_error(y, p)
    if loss == "mean_squared_logarithmic_error":
        return mean_squared_log_error(y, p)
    return None  # mean_absolute_percentage_error, poisson


def predictions(probs: np.ndarray, threshold: float) -> np.ndarray:
    return (probs[:, 1] >= threshold).astype(int) if probs.shape[1] == 2 else probs.argmax(1)


def scores(loss: str, y: np.ndarray, out: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy and data loss (AUC, balanced accuracy on two classes) of a model's outputs."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score

    probs = probabilities(out)
    pred = predictions(probs, threshold)
    found: dict[str, float] = {"accuracy": accuracy_score(y, pred)}
    value = data_loss(loss, y, out)
    if value is not None:
        found["loss"] = value
    if probs.shape[1] == 2:
        found["balanced_accuracy"] = balanced_accuracy_score(y, pred)
        if np.isfinite(probs).all() and len(np.unique(y)) == 2:
            found["auc"] = roc_auc_score(y, probs[:, 1])
    return found


def by_hand(model: Any, cfg: dict, x: np.ndarray, level: float) -> dict[str, Any]:
    """The regularization penalty and the diagnostics from the weights, with NumPy."""
    dense = [layer for layer in model.layers if layer.name.startswith("hidden_")]
    a = x.reshape(len(x), -1).astype(np.float64)
    acts, l2 = [], 0.0
    for layer in dense:
        kernel, bias = (np.asarray(w, dtype=np.float64) for w in layer.get_weights())
        a = ACT[cfg["activation"]](a @ kernel + bias)
        acts.append(a)
        l2 += cfg["kernel_l2"] * float(np.sum(kernel**2))
    # Keras' L1 activity term of a batch is l1 * sum|a| / batch size: per row, whatever the
    # batch, so its mean over batches (weighted by their rows) is l1 * sum|a| / n.
    l1 = cfg["activity_l1"] * sum(float(np.sum(np.abs(h))) for h in acts) / len(x)
    found: dict[str, Any] = {"penalty": l2 + l1}
    if not acts or not all(np.isfinite(h).all() for h in acts):
        return found
    if cfg["activation"] in ("relu", "leaky_relu"):
        dead = [~(h > 0).any(axis=0) for h in acts]
        found |= {f"dead_fraction/hidden_{i}": d.mean() for i, d in enumerate(dead, 1)}
        found["dead_fraction"] = np.concatenate(dead).mean()
    if cfg["activation"] in ("tanh", "sigmoid"):
        low, high = (-level, level) if cfg["activation"] == "tanh" else (1 - level, level)
        flat = [(h < low) | (h > high) for h in acts]
        found |= {f"saturated_fraction/hidden_{i}": f.mean() for i, f in enumerate(flat, 1)}
        found["saturated_fraction"] = np.concatenate(flat, axis=1).mean()
    return found


def model_dirs(model_dir: Path, seeds: list[int]) -> list[Path]:
    """The first seed's models at the top of models/<variant>/, the others' in seed<S>/."""
    return [model_dir] + [model_dir / f"seed{s}" for s in seeds[1:]]


def check_variant(root: Path, name: str, params: Any, diffs: Diffs) -> str:
    """One variant's metrics file against its models' predictions."""
    import keras

    model_dir = root / MODELS_DIR / name
    trained = json.loads((model_dir / "train.json").read_text())
    cfg, seed = trained["config"], trained["seed"]
    reported = json.loads((root / METRICS_DIR / f"{name}.json").read_text())
    dataset, loss = cfg["dataset"], cfg["loss"]
    prepared = root / PREPARED_DIR
    x, y = load_split(split_path(prepared, "test", dataset))
    raw_x = load_raw_x(split_path(prepared, "test", dataset))  # what the saved models take
    x_val, y_val = load_split(split_path(prepared, "val", dataset))
    ev = params.evaluate
    seeds = list(range(seed, seed + cfg.get("seeds", 1)))
    per_seed: dict[int, dict[str, dict[str, float]]] = {}
    for s, where in zip(seeds, model_dirs(model_dir, seeds), strict=True):
        per_seed[s] = {}
        for which in ("best", "last"):
            model = keras.saving.load_model(where / f"{which}.keras")
            out = model.predict(raw_x, batch_size=ev.batch_size, verbose=0)
            mine = scores(loss, y, out, ev.threshold)
            per_seed[s][which] = mine
            if s != seed:
                continue
            mine |= by_hand(model, cfg, x, ev.diagnostics.saturation)
            for metric, value in mine.items():
                if metric in reported[which]:
                    diffs.add(name, f"{which}/{metric}", reported[which][metric], value)
            if which == "best":  # its val figures, as Keras' val_loss adds them up
                # the val file holds prepared rows only: the trained layers behind the raw ones
                trained = keras.Sequential(
                    [layer for layer in model.layers[1:] if not layer.name.startswith(RAW_PREFIX)]
                )
                out_val = trained.predict(x_val, batch_size=cfg["batch_size"], verbose=0)
                val = scores(loss, y_val, out_val, 0.5)  # Keras' accuracy metrics: 0.5
                penalty = by_hand(model, cfg, x_val, ev.diagnostics.saturation)["penalty"]
                for metric, value in (
                    ("best_val_loss", val.get("loss", np.nan) + penalty),
                    ("best_val_accuracy", val["accuracy"]),
                ):
                    if np.isfinite(value):
                        diffs.add(name, metric, reported.get(metric), value)
    if dataset in ("thoracic", "thoracic_clean"):
        majority = float(np.mean(y == np.bincount(y).argmax()))
        diffs.add(name, "majority_accuracy", reported.get("majority_accuracy"), majority)
    if len(seeds) > 1:
        check_seeds(name, reported.get("seeds", {}), per_seed, diffs)
    first = per_seed[seed]
    accuracy = f"best {first['best']['accuracy']:.4f}, last {first['last']['accuracy']:.4f}"
    return f"{name}: test accuracy {accuracy}, seeds {seeds}: {diffs.summary()}"


def check_seeds(name: str, reported: dict, per_seed: dict, diffs: Diffs) -> None:
    """metrics' `seeds`: per checkpoint and score, mean and sample sd over the seeds."""
    if reported.get("seeds") != sorted(per_seed):
        diffs.failed.append(
            f"{name} seeds: reported {reported.get('seeds')}, trained {sorted(per_seed)}"
        )
    for key, stats in reported.items():
        if key == "seeds":
            continue
        which, metric = key.split("_", 1)
        values = [per_seed[s][which].get(metric) for s in sorted(per_seed)]
        if any(v is None for v in values):
            continue
        diffs.add(name, f"seeds/{key}/mean", stats["mean"], statistics.mean(values))
        diffs.add(name, f"seeds/{key}/sd", stats["sd"], statistics.stdev(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root", type=Path, default=REPO_ROOT, help="the repository (default: this one)"
    )
    args = parser.parse_args()
    root = args.root.resolve()
    params = load_params(root)
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # predict's retracing warnings: one model after another
    diffs = Diffs()
    checked = 0
    for name in params.study_variants():
        if not (root / MODELS_DIR / name / "train.json").is_file():
            print(f"{name}: not trained here (no models/{name}/train.json); skipped")
            continue
        print(check_variant(root, name, params, diffs), flush=True)
        checked += 1
    for line in check_crossval(root, params, diffs):
        print(line, flush=True)
    print(
        "largest |reported - recomputed|: "
        + ", ".join(f"{k} {v:.2e}" for k, v in sorted(diffs.worst.items()))
    )
    for problem in diffs.failed:
        print(f"MISMATCH {problem}")
    verdict = "all agree" if not diffs.failed else f"{len(diffs.failed)} out of tolerance"
    print(
        f"check_metrics: {checked} variants, {diffs.compared} figures compared: {verdict}"
        f" (tolerance {EXACT:g}; loss {TOLERANCE['loss']:g}; dead/saturated fractions"
        f" {TOLERANCE['fraction']:g}; val figures {VAL_TOLERANCE:g})"
    )
    sys.exit(1 if diffs.failed else 0)


if __name__ == "__main__":
    main()
