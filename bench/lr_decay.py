"""The searched variant (issue 9) under learning-rate policies, trained as train@searched
trains (stages/train.py: EarlyStopping, best-only checkpoint on val_loss), on the prepared
real data. A policy is one of
  none         the rate stays the optimizer's (the searched trial's);
  halve:N      ExponentialDecay halving it every N epochs (decay_steps = N epochs of steps);
  plateau:P    ReduceLROnPlateau halving it after P epochs without a better val_loss.

  python -m bench.lr_decay none halve:10 halve:5 plateau:3 plateau:2
                                    # one training per policy; needs `dvc repro prepare`

Judge by validation (val_loss and val_accuracy at the best epoch); the test accuracy of the
best and last checkpoints (stages/scoring.py, as evaluate scores them) is printed for the
record. Prints one JSON line per policy. Changes nothing in the pipeline.
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
    parser.add_argument("policy", nargs="+", help="none, halve:N or plateau:P")
    args = parser.parse_args()
    for policy in args.policy:  # all checked before the first training
        kind, _, n = policy.partition(":")
        if not ((kind == "none" and not n) or (kind in ("halve", "plateau") and n.isdigit())):
            parser.error(f"policy {policy!r}: allowed: none, halve:N, plateau:P")
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
    for policy in args.policy:
        kind, _, n = policy.partition(":")
        cfg = copy.deepcopy(base)
        cfg["lr_schedule"] = cfg["reduce_lr_on_plateau"] = None
        if kind == "halve":  # from the optimizer's rate: no initial_learning_rate
            cfg["lr_schedule"] = {
                "name": "exponential_decay",
                "decay_steps": steps * int(n),
                "decay_rate": 0.5,
            }
        elif kind == "plateau":
            cfg["reduce_lr_on_plateau"] = {"factor": 0.5, "patience": int(n)}
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
            "policy": policy, "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch, "val_loss_best": round(history["val_loss"][best], 4),
            "val_accuracy_best": round(history["val_accuracy"][best], 4),
            "test_accuracy_best": test["best"], "test_accuracy_last": test["last"],
            "seconds": round(seconds, 1),
        }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
