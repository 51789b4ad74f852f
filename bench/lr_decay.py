"""The searched variant (issue 9) under learning-rate policies, judged without the test split.

A policy is one of
  none         the rate stays the optimizer's (the searched trial's);
  halve:N      ExponentialDecay halving it every N epochs (decay_steps = N epochs of steps);
  plateau:P    ReduceLROnPlateau halving it after P epochs without a better val_loss.

  python -m bench.lr_decay none halve:10 halve:5 plateau:3 plateau:2
                                    # one training per policy; needs `dvc repro prepare`

The test split is never read. A held-out slice of the training images (HOLDOUT of
data/prepared/train/<dataset>.npz, stratified, seeded by params.yaml's seed) is set aside;
each policy trains on the rest as train@searched trains (study.training.train.train_model:
EarlyStopping and the best-only checkpoint on the real val split, the plateau callback on
val_loss), and is judged by its val_loss and val_accuracy at the best epoch and by the
accuracy of its best and last checkpoints on the held-out slice, which no training or
choice saw. Prints one JSON line per policy. Changes nothing in the pipeline.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from study.config.params import Params, load_params
from study.config.paths import PREPARED_DIR, REPO_ROOT, split_path
from study.config.variant import Variant
from study.io.splits import load_split
from study.training.batches import steps as epoch_steps

HOLDOUT = 0.1  # of the training images
Split = tuple[np.ndarray, np.ndarray]


def carve(train: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """(the rest, the held-out slice) of a training split: a stratified, seeded slice."""
    from sklearn.model_selection import train_test_split

    x, y = train
    rest, held = train_test_split(
        np.arange(len(y)), test_size=fraction, stratify=y, random_state=seed
    )
    rest, held = np.sort(rest), np.sort(held)  # the rest keeps the file's order
    return (x[rest], y[rest]), (x[held], y[held])


def policy_config(base: Variant, policy: str, steps_per_epoch: int) -> Variant:
    """The base variant with only the given learning-rate policy."""
    kind, _, n = policy.partition(":")
    fields = base.model_dump(mode="json", exclude_unset=True)
    fields["lr_schedule"] = fields["reduce_lr_on_plateau"] = None
    if kind == "halve":  # from the optimizer's rate: no initial_learning_rate
        fields["lr_schedule"] = {
            "name": "exponential_decay",
            "decay_steps": steps_per_epoch * int(n),
            "decay_rate": 0.5,
        }
    elif kind == "plateau":
        fields["reduce_lr_on_plateau"] = {"factor": 0.5, "patience": int(n)}
    return Variant.model_validate_json(json.dumps(fields))


def run_policy(
    params: Params, cfg: Variant, train: Split, val: Split, held: Split
) -> dict[str, Any]:
    """One training; its validation figures at the best epoch and held-out accuracies."""
    import keras

    from study.evaluation.scoring import score_model
    from study.training.fitting import configure_tf
    from study.training.train import train_model

    keras.backend.clear_session()
    configure_tf(params.seed, params.deterministic, params.train.threads)  # as train@V
    with tempfile.TemporaryDirectory(prefix="bench-lr-") as tmp:
        start = time.perf_counter()
        result = train_model(
            cfg, train, val, Path(tmp) / "out", Path(tmp) / "work", seed=params.seed
        )
        seconds = time.perf_counter() - start
        held_out = {}
        for which in ("best", "last"):
            model = keras.saving.load_model(Path(tmp) / "out" / f"{which}.keras")
            scores, _ = score_model(
                model, *held, cfg, params.evaluate.batch_size, params.evaluate.threshold
            )
            held_out[which] = scores["accuracy"]
    best = result.best_epoch - 1
    return {
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "val_loss_best": round(result.history["val_loss"][best], 4),
        "val_accuracy_best": round(result.history["val_accuracy"][best], 4),
        "heldout_accuracy_best": held_out["best"],
        "heldout_accuracy_last": held_out["last"],
        "seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("policy", nargs="+", help="none, halve:N or plateau:P")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="the repository (this one)")
    args = parser.parse_args()
    for policy in args.policy:  # all checked before the first training
        kind, _, n = policy.partition(":")
        if not ((kind == "none" and not n) or (kind in ("halve", "plateau") and n.isdigit())):
            parser.error(f"policy {policy!r}: allowed: none, halve:N, plateau:P")
    params = load_params(args.root)
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # Keras' retracing warnings: one model after another
    base = params.variant(params.search.variant)
    prepared = args.root / PREPARED_DIR
    train, held = carve(
        load_split(split_path(prepared, "train", base.dataset)), HOLDOUT, params.seed
    )
    val = load_split(split_path(prepared, "val", base.dataset))
    print(
        f"lr_decay: {params.search.variant} on {len(train[1])} training images; val"
        f" {len(val[1])}; held-out slice {len(held[1])} ({HOLDOUT:.0%} of train, stratified,"
        f" seed {params.seed}); the test split is not read",
        flush=True,
    )
    steps = epoch_steps(len(train[1]), base.batch_size)
    for policy in args.policy:
        cfg = policy_config(base, policy, steps)
        print(
            json.dumps({"policy": policy, **run_policy(params, cfg, train, val, held)}), flush=True
        )


if __name__ == "__main__":
    main()
