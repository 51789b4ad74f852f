"""Benchmark: the search stage at its default budget against the README's architecture grid.

  python -m bench.search           # real data (data/prepared; `dvc repro prepare` first)
  python -m bench.search --quick   # a tiny subsample, 2 epochs: checks that it all runs

Both sides train on the train split and are scored on the validation split only:
- grid: the README's grid (part 1 of the study) for the `dropout` variant, hidden width
  32/64/128/256 x depth 1-3, each point trained like a variant (train.defaults' epochs,
  EarlyStopping) by the train stage's own function (stages.train.train_model). Not through
  `dvc exp run --queue` + `dvc queue start -j 2`: the 12 trainings run as Ray tasks on a local
  instance, 2 at a time, one CPU each (the queue's parallelism without its per-experiment
  copies and DVC bookkeeping, which would only add to the grid's time);
- search: stages.search.run_search with params.yaml's `search` section (its own local Ray
  instance), outputs and MLflow runs in a temporary directory, not in this repository.
Then the search's best configuration is trained as the searched variant would be
(train_model, full epochs) and evaluated on the test split (stages.evaluate.evaluate_variant).

Prints each wall time, the best validation accuracy each reached, when the search first
came within 0.005 of the grid's best (from the trials' report times, counted from the
start of the search, Ray's start-up included), the searched variant's test accuracy, and a
last `bench-search:` line.
"""

from __future__ import annotations

import argparse
import copy
import logging
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from stages.formats import load_split, split_path
from stages.params import (
    PREPARED_DIR,
    REPO_ROOT,
    SEARCH_BEST,
    load_params,
    resolve_entry,
    resolve_variant,
)

GRID_VARIANT = "dropout"
UNITS, DEPTHS = (32, 64, 128, 256), (1, 2, 3)
WITHIN = 0.005  # of the grid's best validation accuracy
SPLITS = ("train", "val", "test")
QUICK = {"train": 2000, "val": 500, "test": 500, "epochs": 2}


def subsample(split: tuple[np.ndarray, np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = split
    rows = np.random.default_rng(0).permutation(len(x))[:n]
    return x[rows], y[rows]


def grid_point(cfg: dict[str, Any], data: tuple, settings: dict[str, Any]) -> dict[str, Any]:
    """One grid point, trained like a variant in a scratch directory (a Ray task)."""
    import keras

    from stages.train import configure_tf, train_model

    keras.backend.clear_session()
    configure_tf(settings["seed"], settings["deterministic"], 1)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-grid-") as tmp:
        result = train_model(cfg, data[0], data[1], Path(tmp) / "out", Path(tmp) / "work")
    return {
        "units": cfg["units"],
        "depth": cfg["depth"],
        "val_accuracy": max(result.history["val_accuracy"]),
        "epochs": result.epochs_run,
        "seconds": time.perf_counter() - start,
    }


def run_grid(params: dict, train: tuple, val: tuple, settings: dict) -> tuple[list, float]:
    """The 12 grid points as Ray tasks, 2 at a time; (their results, wall seconds)."""
    import ray

    base = params["variants"][GRID_VARIANT]
    cfgs = [
        resolve_entry(params, {**base, "units": u, "depth": d}, f"grid {u}x{d}")
        for u in UNITS
        for d in DEPTHS
    ]
    start = time.monotonic()
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        runtime_env={"py_modules": [str(REPO_ROOT / "stages")]},
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    try:
        data = ray.put((train, val))
        task = ray.remote(num_cpus=1)(grid_point)
        results = ray.get([task.remote(cfg, data, settings) for cfg in cfgs])
    finally:
        ray.shutdown()
    return results, time.monotonic() - start


def searched_test_accuracy(params: dict, best: dict, data: dict, settings: dict) -> float:
    """The searched variant trained (full epochs) and its best checkpoint scored on test."""
    import keras

    from stages.evaluate import evaluate_variant
    from stages.train import configure_tf, train_model

    cfg = resolve_entry(params, best, "search/best.yaml")
    keras.backend.clear_session()
    configure_tf(settings["seed"], settings["deterministic"], 1)
    with tempfile.TemporaryDirectory(prefix="bench-searched-") as tmp:
        out = Path(tmp) / "out"
        result = train_model(cfg, data["train"], data["val"], out, Path(tmp) / "work")
        trained = {**cfg, "best_epoch": result.best_epoch, "epochs_run": result.epochs_run}
        metrics, _ = evaluate_variant(trained, params["evaluate"], out, data["test"])
    return metrics["best"]["accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny subsample, 2 epochs")
    args = parser.parse_args()
    params = copy.deepcopy(load_params())
    search = params["search"]
    prepared = REPO_ROOT / PREPARED_DIR
    data = {s: load_split(split_path(prepared, s, search["dataset"])) for s in SPLITS}
    if args.quick:
        data = {s: subsample(split, QUICK[s]) for s, split in data.items()}
        params["train"]["defaults"]["epochs"] = QUICK["epochs"]
        search.update(trials=4, startup_trials=2, max_epochs=QUICK["epochs"], grace_period=1)
    settings = {"seed": params["seed"], "deterministic": params["deterministic"]}
    resolve_variant(params, GRID_VARIANT)  # a valid variant before anything runs

    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        root = Path(tmp)
        for split in ("train", "val"):  # what run_search reads, subsampled or not
            path = split_path(root / PREPARED_DIR, split, search["dataset"])
            path.parent.mkdir(parents=True)
            np.savez(path, x=data[split][0], y=data[split][1])
        os.environ["DVC_ROOT"] = str(root)  # MLflow's store and artifacts: not this repo's
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
        from stages.search import run_search

        start = time.monotonic()
        started = time.time()
        stats = run_search(params, root)
        search_s = time.monotonic() - start
        best_entry = yaml.safe_load((root / SEARCH_BEST).read_text())
    records = stats["trial_records"].values()
    reports = [r for record in records for r in record["results"]]
    print(
        f"search: {stats['trials']} trials ({stats['completed']} completed,"
        f" {stats['stopped_early']} stopped early, {stats['time_limit']} cut by the time"
        f" limit, {stats['failed']} failed) in {search_s:.1f} s; best val_accuracy"
        f" {max(r['val_accuracy'] for r in reports):.4f}",
        flush=True,
    )
    grid, grid_s = run_grid(params, data["train"], data["val"], settings)
    top = max(grid, key=lambda r: r["val_accuracy"])
    print(f"grid: {len(grid)} trainings of `{GRID_VARIANT}`, 2 at a time, in {grid_s:.1f} s")
    for r in sorted(grid, key=lambda r: (r["units"], r["depth"])):
        print(
            f"  units {r['units']:3d} depth {r['depth']}: val_accuracy {r['val_accuracy']:.4f}"
            f" after {r['epochs']} epochs, {r['seconds']:.1f} s"
        )
    best = f"(units {top['units']}, depth {top['depth']})"
    print(f"grid: best val_accuracy {top['val_accuracy']:.4f} {best}")
    target = top["val_accuracy"] - WITHIN
    reached = [r["wall"] - started for r in reports if r["val_accuracy"] >= target]
    to_best = min(reached) if reached else math.inf
    print(f"search: within {WITHIN} of the grid's best ({target:.4f}) after {to_best:.1f} s")
    test_acc = searched_test_accuracy(params, best_entry, data, settings)
    print(f"searched variant: test accuracy {test_acc:.4f} (best checkpoint)")
    print(
        f"bench-search: grid_s={grid_s:.1f} search_s={search_s:.1f}"
        f" search_to_grid_best_s={to_best:.1f} ratio={to_best / grid_s:.2f}"
        f" search_vs_grid={search_s / grid_s:.2f}"
        f" searched_test_acc={test_acc:.4f} trials={stats['trials']}"
        f" stopped_early={stats['stopped_early']}"
    )


if __name__ == "__main__":
    main()
