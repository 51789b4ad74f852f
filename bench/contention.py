"""Two trainings at once on this machine: does each still get a whole core?

  python -m bench.contention [--epochs N] [--pairs N]

Fits the searched variant (search/best.yaml over train.defaults, with the pipeline's TF
settings) on the prepared Fashion-MNIST train split for N epochs: once alone, then as two
processes started together, `--pairs` times. Each fit prints its wall time and its process's
CPU time over the fit (after one warm-up epoch on a slice, so graph building is not timed).
A process whose wall time exceeds its CPU time was runnable but not running: on an idle
2-core machine two single-threaded fits should each keep their alone time.
Prints `contention: run=R wall_s=N cpu_s=N` per fit.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time

from stages.params import REPO_ROOT

WARMUP_ROWS = 2560


def fit_once(label: str, epochs: int) -> None:
    """One timed fit of the searched variant, in this process."""
    from stages.fitting import configure_tf
    from stages.formats import load_split, split_path
    from stages.model import build_model, encode_labels
    from stages.params import PREPARED_DIR, load_params, require, resolve_variant

    params = load_params(REPO_ROOT)
    cfg = resolve_variant(params, require(params, "search.variant"))
    configure_tf(
        require(params, "seed"), require(params, "deterministic"), require(params, "train.threads")
    )
    x, y = load_split(split_path(REPO_ROOT / PREPARED_DIR, "train", cfg["dataset"]))
    y = encode_labels(y, cfg)
    model = build_model(cfg)
    model.fit(x[:WARMUP_ROWS], y[:WARMUP_ROWS], batch_size=cfg["batch_size"], verbose=0)
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    model.fit(x, y, batch_size=cfg["batch_size"], epochs=epochs, verbose=0)
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    print(f"contention: run={label} wall_s={wall:.1f} cpu_s={cpu:.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--fit", help=argparse.SUPPRESS)  # a child process's own fit
    args = parser.parse_args()
    if args.fit:
        fit_once(args.fit, args.epochs)
        return
    child = [sys.executable, "-m", "bench.contention", "--epochs", str(args.epochs), "--fit"]
    subprocess.run([*child, "alone"], cwd=REPO_ROOT, check=True)
    for pair in range(args.pairs):
        procs = [subprocess.Popen([*child, f"pair{pair}{side}"], cwd=REPO_ROOT) for side in "ab"]
        if any(proc.wait() for proc in procs):
            sys.exit("bench: a fit failed")


if __name__ == "__main__":
    main()
