"""Untracked training loops the pipeline is measured against (no DVC, no MLflow).

  python -m bench.loops notebook REPO   # the seed notebook's way: plain fit, TF defaults
  python -m bench.loops bare REPO       # the pipeline's own training settings, untracked

Both train every variant of REPO/params.yaml, one after another in this one process, on
REPO/data/prepared, and print one JSON line per variant.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from stages.formats import load_split, split_path
from stages.params import (
    PREPARED_DIR,
    load_params,
    require,
    resolve_all_variants,
    resolve_variant,
    study_variants,
)


def notebook(cfg: dict, train: tuple, val: tuple, out: Path) -> dict:
    """What the seed notebook does: model.fit with EarlyStopping + best-only checkpoint."""
    import keras

    from stages.model import build_model, encode_labels

    model = build_model({**cfg, "steps_per_execution": 1})  # Keras' default
    history = model.fit(
        train[0],
        encode_labels(train[1], cfg),
        validation_data=(val[0], encode_labels(val[1], cfg)),
        epochs=cfg["epochs"],
        batch_size=cfg["batch_size"],
        callbacks=[
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg["patience"]),
            keras.callbacks.ModelCheckpoint(out / "best.keras", save_best_only=True),
        ],
        verbose=0,
    ).history
    model.save(out / "last.keras")
    return {"epochs_run": len(history["loss"]), "val_accuracy": history["val_accuracy"][-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["notebook", "bare"])
    parser.add_argument("repo", type=Path)
    args = parser.parse_args()
    params = load_params(args.repo)
    # The pipeline's variants: `variants`, then the searched one (from search/best.yaml).
    cfgs = resolve_all_variants(params)
    cfgs.update({n: resolve_variant(params, n) for n in study_variants(params) if n not in cfgs})
    import keras

    from stages.train import configure_tf, train_model

    seed = require(params, "seed")
    if args.mode == "bare":
        configure_tf(seed, require(params, "deterministic"), require(params, "train.threads"))

    prepared = args.repo / PREPARED_DIR
    with tempfile.TemporaryDirectory() as tmp:
        for name, cfg in cfgs.items():
            train = load_split(split_path(prepared, "train", cfg["dataset"]))
            val = load_split(split_path(prepared, "val", cfg["dataset"]))
            out = Path(tmp) / name
            out.mkdir()
            # Seeded per variant, as each pipeline stage is (a fresh process per variant):
            # the same seed gives each variant the same initial weights in both.
            keras.utils.set_random_seed(seed)
            start = time.perf_counter()
            if args.mode == "notebook":
                info = notebook(cfg, train, val, out)
            else:
                result = train_model(cfg, train, val, out, Path(tmp) / f"{name}.work")
                info = {
                    "epochs_run": result.epochs_run,
                    "val_accuracy": result.history["val_accuracy"][-1],
                }
            info.update(variant=name, seconds=round(time.perf_counter() - start, 2))
            print(json.dumps(info), flush=True)


if __name__ == "__main__":
    main()
