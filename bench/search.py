"""Benchmark: the search stage at its default budget against the README's architecture grid.

  python -m bench.search           # real data (data/prepared; `dvc repro prepare` first)
  python -m bench.search --quick   # a tiny subsample, 2 epochs: checks that it all runs

Every choice here is made, and every figure printed, without the test split, which is never
read. A held-out slice of the training images (bench.lr_decay.HOLDOUT, stratified, seeded by
params.yaml's seed) is set aside first; both sides train on the rest and choose on the
validation split:
- grid: the README's grid (part 1 of the study) for the `dropout` variant, hidden width
  32/64/128/256 x depth 1-3, each point trained like a variant (train.defaults' epochs,
  EarlyStopping) by the train stage's own function (study.training.train.train_model). Not
  through `dvc exp run --queue` + `dvc queue start -j 2`: the 12 trainings run as Ray tasks on
  a local instance, 2 at a time, one CPU each (the queue's parallelism without its
  per-experiment copies and DVC bookkeeping, which would only add to the grid's time);
- search: study.search.run.run_search with params.yaml's `search` section (its own local Ray
  instance), outputs and MLflow runs in a temporary directory, not in this repository.
Then the search's best configuration is trained as the searched variant would be (train_model,
its full epochs). The grid's choice and the searched variant are each scored once on the
held-out slice, which neither choice saw: the comparison of what each way picked.

Prints each wall time, the best validation accuracy each reached, when the search first came
within 0.005 of the grid's best (from the trials' report times, counted from the start of the
search, Ray's start-up included), the held-out accuracies, and a last `bench-search:` line.
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

import numpy as np
import yaml

from bench.lr_decay import HOLDOUT, carve
from study.config.params import Params, load_params, resolve_entry
from study.config.paths import PREPARED_DIR, REPO_ROOT, split_path
from study.config.raw import read_params
from study.config.variant import Variant
from study.io.splits import load_split, save_split

GRID_VARIANT = "dropout"
UNITS, DEPTHS = (32, 64, 128, 256), (1, 2, 3)
WITHIN = 0.005  # of the grid's best validation accuracy
QUICK = {"train": 2000, "val": 500, "epochs": 2}
Split = tuple[np.ndarray, np.ndarray]


def subsample(split: Split, n: int) -> Split:
    x, y = split
    rows = np.sort(np.random.default_rng(0).permutation(len(x))[:n])
    return x[rows], y[rows]


def held_out_accuracy(model_file: Path, cfg: Variant, held: Split, settings: dict) -> float:
    """Accuracy of a saved model on the held-out slice (study.evaluation.scoring, as evaluate)."""
    import keras

    from study.evaluation.scoring import score_model

    model = keras.saving.load_model(model_file)
    scores, _ = score_model(model, *held, cfg, settings["batch_size"], settings["threshold"])
    return scores["accuracy"]


def train_and_score(cfg: Variant, data: tuple[Split, Split, Split], settings: dict) -> dict:
    """One variant trained like train@V in a scratch directory: its validation figures (best
    over epochs; at the best epoch) and its best checkpoint's held-out accuracy."""
    import keras

    from study.training.fitting import configure_tf
    from study.training.train import train_model

    train, val, held = data
    keras.backend.clear_session()
    configure_tf(settings["seed"], settings["deterministic"], 1)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-grid-") as tmp:
        result = train_model(
            cfg, train, val, Path(tmp) / "out", Path(tmp) / "work", seed=settings["seed"]
        )
        held_acc = held_out_accuracy(Path(tmp) / "out" / "best.keras", cfg, held, settings)
    best = result.best_epoch - 1
    return {
        "units": cfg.units,
        "depth": cfg.depth,
        "val_accuracy": max(result.history["val_accuracy"]),
        "val_accuracy_at_best": result.history["val_accuracy"][best],
        "val_loss_at_best": result.history["val_loss"][best],
        "heldout_accuracy": held_acc,
        "epochs": result.epochs_run,
        "best_epoch": result.best_epoch,
        "seconds": time.perf_counter() - start,
    }


def run_grid(
    params: Params, data: tuple[Split, Split, Split], settings: dict
) -> tuple[list, float]:
    """The 12 grid points as Ray tasks, 2 at a time; (their results, wall seconds)."""
    import ray

    from study.search.loopback import loopback_only

    base = params.variants[GRID_VARIANT].model_dump(exclude_unset=True)
    cfgs = [
        resolve_entry(params, {**base, "units": u, "depth": d}, f"grid {u}x{d}")
        for u in UNITS
        for d in DEPTHS
    ]
    start = time.monotonic()
    loopback_only()
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        runtime_env={"py_modules": [str(REPO_ROOT / "study"), str(REPO_ROOT / "bench")]},
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    try:
        shared = ray.put(data)
        task = ray.remote(num_cpus=1)(train_and_score)
        results = ray.get([task.remote(cfg, shared, settings) for cfg in cfgs])
    finally:
        ray.shutdown()
    return results, time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny subsample, 2 epochs")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="the repository (this one)")
    args = parser.parse_args()
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # Keras' retracing warnings: one model after another
    raw = copy.deepcopy(read_params(args.root))
    search = raw["search"]
    prepared = args.root / PREPARED_DIR
    train = load_split(split_path(prepared, "train", search["dataset"]))
    val = load_split(split_path(prepared, "val", search["dataset"]))
    if args.quick:
        train, val = subsample(train, QUICK["train"]), subsample(val, QUICK["val"])
        raw["train"]["defaults"]["epochs"] = QUICK["epochs"]
        search.update(trials=4, startup_trials=2, max_epochs=QUICK["epochs"], grace_period=1)
        search["variant_fields"]["epochs"] = QUICK["epochs"]
    train, held = carve(train, HOLDOUT, raw["seed"])
    print(
        f"data: {len(train[1])} training images, {len(val[1])} val, held-out slice"
        f" {len(held[1])} ({HOLDOUT:.0%} of train, stratified); the test split is not read",
        flush=True,
    )

    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        root = Path(tmp)
        # What run_search reads: this params.yaml and the train (without the held-out
        # slice) and val files; its outputs (search/best.yaml, ...) land here too.
        (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        save_split({"train": train, "val": val}, root / PREPARED_DIR, search["dataset"])
        params = load_params(root)
        params.variant(GRID_VARIANT)  # a valid variant before anything runs
        ev = params.evaluate
        settings = {
            "seed": params.seed,
            "deterministic": params.deterministic,
            "batch_size": ev.batch_size,
            "threshold": ev.threshold,
        }
        os.environ["DVC_ROOT"] = str(root)  # MLflow's store, artifacts, backups: not this repo's
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
        from study.search.run import run_search

        start = time.monotonic()
        started = time.time()
        stats = run_search(params, root)
        search_s = time.monotonic() - start
        searched = params.variant(params.search.variant)  # root/search/best.yaml
    records = stats["trial_records"].values()
    reports = [r for record in records for r in record["results"]]
    print(
        f"search: {stats['trials']} trials ({stats['completed']} completed,"
        f" {stats['stopped_early']} stopped early, {stats['time_limit']} cut by the time"
        f" limit, {stats['failed']} failed) in {search_s:.1f} s; best val_accuracy"
        f" {max(r['val_accuracy'] for r in reports):.4f}",
        flush=True,
    )
    data = (train, val, held)
    grid, grid_s = run_grid(params, data, settings)
    top = max(grid, key=lambda r: r["val_accuracy"])  # chosen on validation only
    print(f"grid: {len(grid)} trainings of `{GRID_VARIANT}`, 2 at a time, in {grid_s:.1f} s")
    for r in sorted(grid, key=lambda r: (r["units"], r["depth"])):
        print(
            f"  units {r['units']:3d} depth {r['depth']}: val_accuracy {r['val_accuracy']:.4f}"
            f" (best val_loss {r['val_loss_at_best']:.4f} at epoch {r['best_epoch']}) after"
            f" {r['epochs']} epochs, {r['seconds']:.1f} s; held-out {r['heldout_accuracy']:.4f}"
        )
    chosen = f"(units {top['units']}, depth {top['depth']})"
    print(
        f"grid: best val_accuracy {top['val_accuracy']:.4f} {chosen}; its best checkpoint's"
        f" held-out accuracy {top['heldout_accuracy']:.4f}"
    )
    target = top["val_accuracy"] - WITHIN
    reached = [r["wall"] - started for r in reports if r["val_accuracy"] >= target]
    to_best = min(reached) if reached else math.inf
    print(f"search: within {WITHIN} of the grid's best ({target:.4f}) after {to_best:.1f} s")
    mine = train_and_score(searched, data, settings)
    print(
        f"searched variant ({searched.depth} x {searched.units} {searched.activation},"
        f" {mine['epochs']} epochs): val_accuracy {mine['val_accuracy_at_best']:.4f} and"
        f" val_loss {mine['val_loss_at_best']:.4f} at its best epoch {mine['best_epoch']};"
        f" held-out accuracy {mine['heldout_accuracy']:.4f} (best checkpoint)"
    )
    print(
        f"bench-search: grid_s={grid_s:.1f} search_s={search_s:.1f}"
        f" search_to_grid_best_s={to_best:.1f} ratio={to_best / grid_s:.2f}"
        f" search_vs_grid={search_s / grid_s:.2f}"
        f" grid_val_acc={top['val_accuracy']:.4f} grid_heldout_acc={top['heldout_accuracy']:.4f}"
        f" searched_val_acc={mine['val_accuracy_at_best']:.4f}"
        f" searched_heldout_acc={mine['heldout_accuracy']:.4f}"
        f" trials={stats['trials']} stopped_early={stats['stopped_early']}"
    )


if __name__ == "__main__":
    main()
