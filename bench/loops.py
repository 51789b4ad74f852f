"""Untracked training loops the pipeline is measured against (no DVC, no MLflow).

  python -m bench.loops notebook REPO   # the seed notebook's way: plain fit, TF defaults
  python -m bench.loops bare REPO       # the pipeline's own training settings, untracked
  python -m bench.loops bare REPO --jit-compile true   # bare with XLA-compiled steps

Both train the pipeline's variants (REPO/params.yaml's `variants`, then the searched one from
REPO/search/best.yaml), each with every seed of its `seeds` field as train@V does, one after
another in this one process, on REPO/data/prepared, and print one JSON line per training.

bare: study.training.train.train_model (the train stage's fit: its batches, callbacks,
checkpoints and backups), with TF configured per training as each stage process does
(configure_tf: seed, op determinism, train.threads). notebook: model.fit on the arrays with
steps_per_execution 1, EarlyStopping and a best-only checkpoint, TF's default threads and no
op determinism; only Keras' seed is set, so both start from the same initial weights.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from study.config.params import load_params
from study.config.paths import PREPARED_DIR, split_path
from study.config.variant import Variant
from study.io.splits import load_split


def notebook(cfg: Variant, train: tuple, val: tuple, out: Path) -> dict[str, Any]:
    """What the seed notebook does: model.fit with EarlyStopping + best-only checkpoint (and
    the variant's own rate policy and class weights, so that it trains the same variant)."""
    import keras
    import numpy as np

    from study.training.fitting import class_weights
    from study.training.model import build_model, encode_labels

    plain = cfg.model_copy(update={"steps_per_execution": 1})  # Keras' default
    model = build_model(plain, train[0].shape[1:])
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience),
        keras.callbacks.ModelCheckpoint(out / "best.keras", save_best_only=True),
    ]
    if cfg.reduce_lr_on_plateau is not None:
        plateau = cfg.reduce_lr_on_plateau.model_dump(exclude_unset=True)
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", **plateau))
    history = model.fit(
        train[0],
        encode_labels(train[1], cfg),
        validation_data=(val[0], encode_labels(val[1], cfg)),
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        class_weight=class_weights(cfg, train[1]),
        callbacks=callbacks,
        verbose=0,
    ).history
    model.save(out / "last.keras")
    best = int(np.nanargmin(history["val_loss"]))
    return {
        "epochs_run": len(history["loss"]),
        "best_epoch": best + 1,
        "best_val_accuracy": round(history["val_accuracy"][best], 4),
    }


def bare(
    cfg: Variant, train: tuple, val: tuple, out: Path, work: Path, jit_compile: bool, seed: int
) -> dict[str, Any]:
    """The train stage's training, untracked."""
    from study.training.train import train_model

    result = train_model(cfg, train, val, out, work, jit_compile=jit_compile, seed=seed)
    return {
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "best_val_accuracy": round(result.history["val_accuracy"][result.best_epoch - 1], 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["notebook", "bare"])
    parser.add_argument("repo", type=Path)
    parser.add_argument(
        "--jit-compile", choices=["true", "false"], help="bare: train.jit_compile (default: REPO's)"
    )
    args = parser.parse_args()
    params = load_params(args.repo)
    jit = params.train.jit_compile if args.jit_compile is None else args.jit_compile == "true"
    # The pipeline's variants: `variants`, then the searched one (from search/best.yaml).
    cfgs = {name: params.variant(name) for name in params.study_variants()}
    import keras

    from study.training.fitting import configure_tf

    prepared = args.repo / PREPARED_DIR
    with tempfile.TemporaryDirectory(prefix="bench-loops-") as tmp:
        for name, cfg in cfgs.items():
            train = load_split(split_path(prepared, "train", cfg.dataset))
            val = load_split(split_path(prepared, "val", cfg.dataset))
            for seed in range(params.seed, params.seed + cfg.seeds):
                out = Path(tmp) / name / f"seed{seed}"
                keras.backend.clear_session()  # each training as in a fresh process
                start = time.perf_counter()
                if args.mode == "notebook":
                    keras.utils.set_random_seed(seed)  # same initial weights as the pipeline
                    out.mkdir(parents=True)
                    info = notebook(cfg, train, val, out)
                else:  # as each train@V process: seeds, determinism, threads
                    configure_tf(seed, params.deterministic, params.train.threads)
                    info = bare(cfg, train, val, out, Path(tmp) / f"{name}-{seed}.work", jit, seed)
                seconds = round(time.perf_counter() - start, 2)
                print(
                    json.dumps({"variant": name, "seed": seed, **info, "seconds": seconds}),
                    flush=True,
                )


if __name__ == "__main__":
    main()
