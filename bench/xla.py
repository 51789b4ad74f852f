"""XLA-compiled training steps (train.jit_compile) against plain ones: results and time.

  python -m bench.xla REPO [--epochs 2] [--seeds 3] [--report reports/xla.md]

REPO needs data/prepared (e.g. a copy after `dvc repro prepare`). Each Fashion-MNIST variant
of VARIANTS is fitted (study.training.fitting.fit, the pipeline's batches, as each train@V
process: configure_tf with REPO's seed, determinism and threads) for --epochs epochs with
the seeds seed .. seed+seeds-1, plain and XLA-compiled, interleaved; then the thoracic
training TIMED (its own epochs) and a tiny one (TINY_ROWS rows, the test suite's epochs)
--repeats times each. Prints, and writes to --report with the command, date and commit:

- per variant: the last epoch's val accuracy and the test accuracy, XLA minus plain for the
  same seed (mean |difference|) against the sd across seeds of the plain runs;
- per training: median seconds (compilation included) plain and XLA, and XLA / plain.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import git
from study.config.params import load_params
from study.config.paths import PREPARED_DIR, split_path
from study.config.variant import Variant
from study.io.splits import load_split

VARIANTS = ("baseline", "act_relu", "searched")  # softmax, Dense 64, the searched 2 x 512
TIMED = "thoracic_bce"
TINY_ROWS, TINY_EPOCHS = 64, 2  # about a test-suite training (tests/conftest.py: 2 epochs)


def fitted(
    cfg: Variant, data: dict[str, tuple], seed: int, settings: Any, jit: bool
) -> dict[str, float]:
    """One training as a train@V process does it (fresh session, configure_tf); its time,
    last val accuracy and test accuracy."""
    import keras

    from study.training.fitting import configure_tf, fit
    from study.training.model import build_model, class_probabilities

    keras.backend.clear_session()
    configure_tf(seed, settings.deterministic, settings.train.threads)
    start = time.perf_counter()
    model = build_model(cfg, data["train"][0].shape[1:], jit_compile=jit)
    history = fit(model, cfg, data["train"], data["val"], seed=seed)
    seconds = time.perf_counter() - start
    x, y = data["test"]
    probs = class_probabilities(model.predict(x, batch_size=1024, verbose=0), cfg)
    return {
        "seconds": seconds,
        "val_accuracy": float(history.history["val_accuracy"][-1]),
        "test_accuracy": float(np.mean(probs.argmax(axis=1) == y)),
        "weights": hash(b"".join(w.tobytes() for w in model.get_weights())),
    }


def splits(repo: Path, dataset: str) -> dict[str, tuple]:
    prepared = repo / PREPARED_DIR
    return {s: load_split(split_path(prepared, s, dataset)) for s in ("train", "val", "test")}


def accuracy_table(runs: dict[tuple[str, int, bool], dict[str, float]]) -> list[str]:
    """Per variant and metric: mean |XLA - plain| over seeds against the plain runs' sd."""
    lines = [
        "| variant | metric | plain mean | XLA mean | mean abs(XLA - plain), same seed |"
        " sd across seeds (plain) | same weights |",
        "|---|---|---|---|---|---|---|",
    ]
    for variant in dict.fromkeys(v for v, _, _ in runs):
        seeds = sorted({s for v, s, _ in runs if v == variant})
        same = all(
            runs[variant, s, True]["weights"] == runs[variant, s, False]["weights"] for s in seeds
        )
        for metric in ("val_accuracy", "test_accuracy"):
            plain = [runs[variant, s, False][metric] for s in seeds]
            xla = [runs[variant, s, True][metric] for s in seeds]
            diff = statistics.mean(abs(a - b) for a, b in zip(xla, plain, strict=True))
            sd = statistics.stdev(plain) if len(plain) > 1 else float("nan")
            lines.append(
                f"| {variant} | {metric} | {statistics.mean(plain):.4f} |"
                f" {statistics.mean(xla):.4f} | {diff:.4f} | {sd:.4f} | {same} |"
            )
    return lines


def time_table(seconds: dict[tuple[str, bool], list[float]]) -> list[str]:
    lines = [
        "| training | runs | plain s (median) | XLA s (median) | XLA / plain |",
        "|---|---|---|---|---|",
    ]
    for name in dict.fromkeys(n for n, _ in seconds):
        plain, xla = statistics.median(seconds[name, False]), statistics.median(seconds[name, True])
        n = len(seconds[name, False])
        lines.append(f"| {name} | {n} | {plain:.2f} | {xla:.2f} | {xla / plain:.2f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", type=Path)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--report", type=Path)
    args = parser.parse_args()
    params = load_params(args.repo)
    runs: dict[tuple[str, int, bool], dict[str, float]] = {}
    seconds: dict[tuple[str, bool], list[float]] = {}
    for name in args.variants:
        cfg = params.variant(name).model_copy(update={"epochs": args.epochs})
        data = splits(args.repo, cfg.dataset)
        for seed in range(params.seed, params.seed + args.seeds):
            for jit in (False, True):
                runs[name, seed, jit] = fitted(cfg, data, seed, params, jit)
                seconds.setdefault((f"{name} ({args.epochs} epochs)", jit), []).append(
                    runs[name, seed, jit]["seconds"]
                )
                print(
                    json.dumps(
                        {"variant": name, "seed": seed, "xla": jit, **runs[name, seed, jit]}
                    ),
                    flush=True,
                )
    cfg = params.variant(TIMED)
    data = splits(args.repo, cfg.dataset)
    tiny = {s: (x[:TINY_ROWS], y[:TINY_ROWS]) for s, (x, y) in data.items()}
    tiny_cfg = cfg.model_copy(update={"epochs": TINY_EPOCHS})
    for _ in range(args.repeats):
        for jit in (False, True):
            full = fitted(cfg, data, params.seed, params, jit)["seconds"]
            seconds.setdefault((f"{TIMED} ({cfg.epochs} epochs)", jit), []).append(full)
            small = fitted(tiny_cfg, tiny, params.seed, params, jit)["seconds"]
            seconds.setdefault((f"tiny: {TINY_ROWS} rows, {TINY_EPOCHS} epochs", jit), []).append(
                small
            )
    command = "python -m bench.xla " + " ".join(sys.argv[1:])
    text = "\n".join(
        [
            f"# XLA-compiled steps against plain ones ({datetime.date.today().isoformat()})",
            "",
            f"`{command}` at commit {git('rev-parse', '--short', 'HEAD')}; one thread, op",
            "determinism on, the machine shared (timings noisy: compare the ratios).",
            "",
            *accuracy_table(runs),
            "",
            *time_table(seconds),
            "",
        ]
    )
    print(text)
    if args.report:
        args.report.write_text(text)


if __name__ == "__main__":
    main()
