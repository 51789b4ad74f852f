"""crossval: refit a variant on every cross-validation fold of its dataset's non-test rows.

Usage: python -m stages.crossval VARIANT   (dvc.yaml: one stage per variant)
For a variant of a dataset in crossval.datasets, on each fold of stages.reference.cv_splits
(the folds the logistic reference is scored on): the variant's model trained on the fold's
fit rows as train trains it (stages.fitting: its config and class weights, for its `epochs`;
no early stopping, so the held-out rows are never watched), then its class-1 probabilities on
the fold's held-out rows. Writes models/<variant>/cv.json; for a variant of another dataset
one without folds. evaluate scores the probabilities (metrics/<variant>.json, `cv`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from stages.fitting import configure_tf
from stages.formats import write_atomic
from stages.params import (
    MODELS_DIR,
    PREPARED_DIR,
    REPO_ROOT,
    load_params,
    require,
    run_stage,
    variant_arg,
    variant_config,
)
from stages.reference import DIGITS, cv_splits, non_test_rows

CV_FILE = "cv.json"


def crossval_predictions(
    cfg: dict[str, Any],
    x: np.ndarray,
    y: np.ndarray,
    splits: list[tuple[np.ndarray, ...]],
    on_fold: Callable[[int, float], None] | None = None,
) -> list[dict[str, list]]:
    """Per split: the held-out rows, their labels and the class-1 probabilities of the
    variant's model trained on the fit rows.

    One model, reset before every fold to the weights, optimizer and dropout-seed state it
    was built with: the same fit as a freshly built model's (tests/test_crossval.py), without
    tracing TF's graphs again per fold."""
    import keras

    from stages.fitting import fit
    from stages.model import build_model, class_probabilities

    model = build_model(cfg, x.shape[1:])
    model.optimizer.build(model.trainable_variables)
    state = [*model.variables, *model.optimizer.variables]
    initial = [keras.ops.convert_to_numpy(v) for v in state]
    out = []
    for i, (fit_rows, held) in enumerate(splits):
        start = time.perf_counter()
        for variable, value in zip(state, initial, strict=True):
            variable.assign(value)
        fit(model, cfg, (x[fit_rows], y[fit_rows]))
        outputs = keras.ops.convert_to_numpy(model(x[held], training=False))
        prob = class_probabilities(outputs, cfg)[:, 1]
        out.append(
            {
                "rows": held.tolist(),
                "y": y[held].tolist(),
                "probability": [round(float(p), DIGITS) for p in prob],
            }
        )
        if on_fold is not None:
            on_fold(i, time.perf_counter() - start)
    return out


def main() -> None:
    variant = variant_arg(__doc__)
    params = load_params()
    cfg = variant_config(params, variant)
    cv_cfg, seed = require(params, "crossval"), require(params, "seed")
    doc: dict[str, Any] = {"dataset": cfg["dataset"], "splits": []}
    if cfg["dataset"] in cv_cfg["datasets"]:
        x, y = non_test_rows(REPO_ROOT / PREPARED_DIR, cfg["dataset"])
        splits = cv_splits(y, cv_cfg, seed)
        configure_tf(seed, require(params, "deterministic"), require(params, "train.threads"))

        def progress(i: int, seconds: float) -> None:
            print(f"crossval {variant}: fold {i + 1}/{len(splits)} {seconds:.1f}s", flush=True)

        start = time.perf_counter()
        doc["splits"] = crossval_predictions(cfg, x, y, splits, progress)
        doc |= {"folds": cv_cfg["folds"], "repeats": cv_cfg["repeats"], "rows": len(y)}
        # Not in the file, which stays byte-identical for the same inputs (evaluate's dep).
        print(f"crossval {variant}: {len(splits)} fits in {time.perf_counter() - start:.1f}s")
    else:
        print(f"crossval {variant}: {cfg['dataset']} is not in crossval.datasets; no folds")
    path = REPO_ROOT / MODELS_DIR / variant / CV_FILE
    write_atomic(path, (json.dumps(doc) + "\n").encode())


if __name__ == "__main__":
    run_stage(main)
