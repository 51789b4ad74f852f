"""DVC's bookkeeping at scale: sequential `dvc repro` vs tools/ray_repro.py, trivial commands.

  python -m bench.bookkeeping [--sequential N ...] [--runner N ...]   # variants per graph

For each N, the study's own dvc.yaml and params with N generated Fashion-MNIST variants and
every command replaced by one that only writes its outputs (bench/floor.py), in a fresh
copy, timed under `dvc repro` (--sequential sizes) or under the parallel runner (--runner
sizes), which must run every stage and leave `dvc status` clean. The runner's figure
includes starting its local Ray instance. Sequential `dvc repro` grows with the square of
the stages (it rewrites dvc.lock after each), so its default sizes stop early.

Two graph shapes: `study` (default) is the study's dvc.yaml, 4 stages per variant (train,
seeds, crossval, evaluate) and the searched variant's; `issue` is the graph issue 13 timed,
fetch -> prepare -> train@V -> evaluate@V -> compare, 2 stages per variant (the same dvc.yaml with
the other stages removed, and evaluate without their outputs as deps). Either starts with
no dvc.lock, as a new graph does (main's lock holds other stages: 11,916 lines).
Prints `bookkeeping: mode=M shape=S variants=N stages=N seconds=N` per run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.floor import TOUCH, trivial
from bench.workspace import commit, copy_repo, dvc_bin, pipeline_env

SEQUENTIAL = (18,)
RUNNER = (18, 54, 108)
TEMPLATE_VARIANT = "baseline"
# The study's stages issue 13's graph did not have, and evaluate's deps on their outputs.
NOT_IN_ISSUE_SHAPE = ("search", "reference", "seeds", "crossval", "train_searched",
                      "seeds_searched", "crossval_searched", "evaluate_searched")  # fmt: skip
ISSUE_SHAPE_DROPPED_DEPS = ("/cv.json", "/seeds")


def issue_shape(dvc_yaml: dict) -> dict:
    """dvc.yaml reduced to issue 13's shape: fetch, prepare, train@V, evaluate@V, compare."""
    for name in NOT_IN_ISSUE_SHAPE:
        dvc_yaml["stages"].pop(name)
    evaluate = dvc_yaml["stages"]["evaluate"]["do"]
    evaluate["deps"] = [d for d in evaluate["deps"] if not d.endswith(ISSUE_SHAPE_DROPPED_DEPS)]
    return dvc_yaml


def generated(dest: Path, variants: int, shape: str = "study") -> Path:
    """A repo copy whose graph has `variants` variants and trivial commands."""
    repo = copy_repo(dest)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    template = params["variants"][TEMPLATE_VARIANT]
    # Distinct params, so each variant's stages have their own params hash, as in a sweep.
    params["variants"] = {f"v{i:03d}": {**template, "patience": 1 + i} for i in range(variants)}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc_yaml = trivial(yaml.safe_load((repo / "dvc.yaml").read_text()))
    if shape == "issue":
        dvc_yaml = issue_shape(dvc_yaml)
    (repo / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml, sort_keys=False))
    (repo / "bench_touch.py").write_text(TOUCH)
    # A new graph's lock, as in the issue's table: main's entries are other stages'.
    (repo / "dvc.lock").unlink(missing_ok=True)
    commit(repo, f"{variants} trivial variants, {shape} shape")
    return repo


def timed(cmd: list[str], repo: Path) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=repo, env=pipeline_env(), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"bench: {' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return seconds, proc.stdout + proc.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sequential", type=int, nargs="*", default=list(SEQUENTIAL))
    parser.add_argument("--runner", type=int, nargs="*", default=list(RUNNER))
    parser.add_argument("--shape", choices=("study", "issue"), nargs="+", default=["study"])
    args = parser.parse_args()
    modes = [("sequential", n) for n in args.sequential] + [("runner", n) for n in args.runner]
    for shape in args.shape:
        for mode, n in modes:
            measure(mode, n, shape)


def measure(mode: str, n: int, shape: str) -> None:
    """Time one graph under `dvc repro` or the runner; check `dvc status` after it."""
    with tempfile.TemporaryDirectory(prefix="bench-bookkeeping-") as tmp:
        repo = generated(Path(tmp) / "repo", n, shape)
        if mode == "sequential":
            seconds, out = timed([dvc_bin(), "repro"], repo)
            stages = out.count("Running stage")
        else:
            seconds, out = timed([sys.executable, "-m", "tools.ray_repro"], repo)
            stages = out.count(": done in ")
        _, status = timed([dvc_bin(), "status"], repo)
        if "up to date" not in status:
            sys.exit(f"bench: {mode} left stale stages; dvc status:\n{status}")
        print(
            f"bookkeeping: mode={mode} shape={shape} variants={n} stages={stages} "
            f"seconds={seconds:.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
