"""Recompute the evaluate stage's new metrics independently, from the saved models' weights.

  python -m bench.check_metrics     # after `make repro`, in the repository

For every variant's best model on the prepared test split: the data loss with scikit-learn
on the model's predictions, the regularization penalty and the activation diagnostics with
NumPy from the weights (a forward pass by hand), compared with metrics/<variant>.json.
Cross-validation (check_crossval): the folds drawn again with scikit-learn from the prepared
train and val files (the held-out rows and labels in models/<v>/cv.json must be theirs), each
fold's AUC, balanced accuracy and accuracy recomputed from the saved probabilities, their mean
and sd with the statistics module, against metrics/<v>.json's `cv`; the logistic reference
refitted and the majority class counted, against metrics/reference/<dataset>.json.
Seeds (check_seeds, after a run with seeds.repeats > 1): every seed's models' test accuracy
with scikit-learn, their mean and sd with the statistics module, against `seeds`.
Prints one line per variant and the largest difference per metric.
"""

from __future__ import annotations

import json
import statistics

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


def _fold_scores(y: np.ndarray, prob: np.ndarray, threshold: float) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score

    pred = (prob >= threshold).astype(int)
    return {
        "auc": roc_auc_score(y, prob),
        "balanced_accuracy": balanced_accuracy_score(y, pred),
        "accuracy": accuracy_score(y, pred),
    }


def _diffs(per_fold: list[dict[str, float]], reported: dict, prefix: str) -> dict[str, float]:
    """|reported mean/sd - statistics.mean/stdev of the folds| per metric."""
    out = {}
    for name, stats in reported.items():
        if isinstance(stats, dict):
            values = [fold[name] for fold in per_fold]
            out[f"{prefix}{name}_mean"] = abs(stats["mean"] - statistics.mean(values))
            out[f"{prefix}{name}_sd"] = abs(stats["sd"] - statistics.stdev(values))
    return out


def check_crossval(params: dict, cfgs: dict[str, dict]) -> dict[str, float]:
    """The cross-validation metrics recomputed independently; the largest difference each."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import RepeatedStratifiedKFold

    cv_cfg, seed = params["crossval"], params["seed"]
    threshold = params["evaluate"]["threshold"]
    folds, rows, worst = {}, {}, {}
    for dataset in cv_cfg["datasets"]:
        parts = [
            load_split(split_path(REPO_ROOT / PREPARED_DIR, s, dataset)) for s in ("train", "val")
        ]
        x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        cv = RepeatedStratifiedKFold(
            n_splits=cv_cfg["folds"], n_repeats=cv_cfg["repeats"], random_state=seed
        )
        folds[dataset], rows[dataset] = list(cv.split(x, y)), (x, y)
        logistic, majority = [], []
        for fit_rows, held in folds[dataset]:
            model = LogisticRegression(**cv_cfg["logistic"]).fit(x[fit_rows], y[fit_rows])
            logistic.append(_fold_scores(y[held], model.predict_proba(x[held])[:, 1], threshold))
            major = int(np.mean(y[fit_rows]) > 0.5)
            majority.append(
                {"auc": 0.5, "balanced_accuracy": 0.5, "accuracy": float(np.mean(y[held] == major))}
            )
        ref = json.loads((REPO_ROOT / METRICS_DIR / "reference" / f"{dataset}.json").read_text())
        found = _diffs(logistic, ref["logistic"], "logistic_") | _diffs(
            majority, ref["majority"], "majority_"
        )
        print(f"reference {dataset}: " + ", ".join(f"{k} {v:.1e}" for k, v in found.items()))
        worst = {k: max(v, worst.get(k, 0.0)) for k, v in (worst | found).items()}
    for name, cfg in cfgs.items():
        if cfg["dataset"] not in cv_cfg["datasets"]:
            continue
        doc = json.loads((REPO_ROOT / MODELS_DIR / name / "cv.json").read_text())
        x, y = rows[cfg["dataset"]]
        per_fold = []
        for (_, held), split in zip(folds[cfg["dataset"]], doc["splits"], strict=True):
            assert split["rows"] == held.tolist(), f"{name}: held-out rows differ from the folds"
            assert split["y"] == y[held].tolist(), f"{name}: labels differ from the data"
            per_fold.append(_fold_scores(y[held], np.asarray(split["probability"]), threshold))
        reported = json.loads((REPO_ROOT / METRICS_DIR / f"{name}.json").read_text())["cv"]
        found = _diffs(per_fold, reported, "cv_")
        print(f"{name}: cv " + ", ".join(f"{k} {v:.1e}" for k, v in found.items()))
        worst = {k: max(v, worst.get(k, 0.0)) for k, v in (worst | found).items()}
    return worst


def check_seeds(cfgs: dict[str, dict], eval_cfg: dict) -> dict[str, float]:
    """metrics/<v>.json's `seeds` recomputed: each seed's last and best model (train@V's and
    models/<v>/seeds/seed<S>/) predicting the test split, scikit-learn's accuracy of the
    predictions, their mean and sample sd with the statistics module."""
    import keras
    from sklearn.metrics import accuracy_score

    worst: dict[str, float] = {}
    for name, cfg in cfgs.items():
        reported = json.loads((REPO_ROOT / METRICS_DIR / f"{name}.json").read_text()).get("seeds")
        if not reported:
            continue
        x, y = load_split(split_path(REPO_ROOT / PREPARED_DIR, "test", cfg["dataset"]))
        _, *others = reported["seeds"]  # the first is train@V's own
        dirs = [REPO_ROOT / MODELS_DIR / name] + [
            REPO_ROOT / MODELS_DIR / name / "seeds" / f"seed{s}" for s in others
        ]
        found = {}
        for which in ("last", "best"):
            accs = []
            for where in dirs:
                out = keras.saving.load_model(where / f"{which}.keras").predict(x, verbose=0)
                threshold = eval_cfg["threshold"]
                pred = out.argmax(1) if out.shape[1] > 1 else (out[:, 0] >= threshold)
                accs.append(accuracy_score(y, pred.astype(int)))
            stats = reported[f"{which}_accuracy"]
            found[f"seeds_{which}_accuracy_mean"] = abs(stats["mean"] - statistics.mean(accs))
            found[f"seeds_{which}_accuracy_sd"] = abs(stats["sd"] - statistics.stdev(accs))
        print(
            f"{name}: seeds {reported['seeds']} "
            + ", ".join(f"{k} {v:.1e}" for k, v in found.items())
        )
        worst = {k: max(v, worst.get(k, 0.0)) for k, v in (worst | found).items()}
    return worst


def main() -> None:
    import keras

    params = load_params()
    worst: dict[str, float] = {}
    cfgs = resolve_all_variants(params)
    for name, cfg in cfgs.items():
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
    worst |= check_crossval(params, cfgs)
    worst |= check_seeds(cfgs, params["evaluate"])
    print(
        "largest |reported - independent|: " + ", ".join(f"{k} {v:.2e}" for k, v in worst.items())
    )


if __name__ == "__main__":
    main()
