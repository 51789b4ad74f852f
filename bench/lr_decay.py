"""Exploration for the searched variant (issue 9): its config with the learning rate halved
every N epochs, trained as train@V trains (stages/train.py: EarlyStopping, best-only
checkpoint on val_loss), on the prepared real data.

  python -m bench.lr_decay 0 10 5   # one training per N (0: no decay, the variant as it is);
                                    # needs `dvc repro prepare` first

Judge by validation (val_loss and val_accuracy at the best epoch); the test accuracy of the
best and last checkpoints (stages/scoring.py, as evaluate scores them) is printed for the
record. Prints one JSON line per N. Changes nothing in the pipeline.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

from stages.formats import load_split, split_path
from stages.params import PREPARED_DIR, REPO_ROOT, load_params, require, resolve_variant
from stages.scoring import score_model
from stages.train import configure_tf, train_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("every", type=int, nargs="+", help="halve the learning rate every N")
    args = parser.parse_args()
    import keras

    params = load_params()
    seed = require(params, "seed")
    configure_tf(seed, require(params, "deterministic"), require(params, "train.threads"))
    base = resolve_variant(params, require(params, "search.variant"))
    splits = {
        s: load_split(split_path(REPO_ROOT / PREPARED_DIR, s, base["dataset"]))
        for s in ("train", "val", "test")
    }
    steps = -(-len(splits["train"][1]) // base["batch_size"])  # per epoch
    for every in args.every:
        cfg = copy.deepcopy(base)
        cfg["lr_schedule"] = None
        if every:
            cfg["lr_schedule"] = {
                "name": "exponential_decay",
                "initial_learning_rate": base["optimizer"]["learning_rate"],
                "decay_steps": steps * every,
                "decay_rate": 0.5,
            }
        keras.utils.set_random_seed(seed)  # as train@V: the same initial weights
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            result = train_model(cfg, splits["train"], splits["val"], Path(tmp) / "out",
                                 Path(tmp) / "work")  # fmt: skip
            seconds = time.perf_counter() - start
            history, best = result.history, result.best_epoch - 1
            test = {
                which: score_model(
                    keras.models.load_model(Path(tmp) / "out" / f"{which}.keras"),
                    *splits["test"], cfg, require(params, "evaluate"),
                )[0]["accuracy"]
                for which in ("best", "last")
            }  # fmt: skip
        print(json.dumps({
            "halve_every_epochs": every, "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch, "val_loss_best": round(history["val_loss"][best], 4),
            "val_accuracy_best": round(history["val_accuracy"][best], 4),
            "test_accuracy_best": test["best"], "test_accuracy_last": test["last"],
            "seconds": round(seconds, 1),
        }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
