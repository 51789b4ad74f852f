"""DVC's bookkeeping at scale: sequential `dvc repro` vs tools/ray_repro.py, trivial commands.

  python -m bench.bookkeeping [--sequential N ...] [--runner N ...]   # variants per graph

For each N, the study's own dvc.yaml and params with N generated Fashion-MNIST variants and
every command replaced by one that only writes its outputs (bench/floor.py), in a fresh
copy, timed under `dvc repro` (--sequential sizes) or under the parallel runner (--runner
sizes), which must run every stage and leave `dvc status` clean. The runner's figure
includes starting its local Ray instance. Sequential `dvc repro` grows with the square of
the stages (it rewrites dvc.lock after each), so its default sizes stop early.
Prints `bookkeeping: mode=M variants=N stages=N seconds=N` per run.
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


def generated(dest: Path, variants: int) -> Path:
    """A repo copy whose graph has `variants` variants and trivial commands."""
    repo = copy_repo(dest)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    template = params["variants"][TEMPLATE_VARIANT]
    # Distinct params, so each variant's stages have their own params hash, as in a sweep.
    params["variants"] = {f"v{i:03d}": {**template, "patience": 1 + i} for i in range(variants)}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc_yaml = trivial(yaml.safe_load((repo / "dvc.yaml").read_text()))
    (repo / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml, sort_keys=False))
    (repo / "bench_touch.py").write_text(TOUCH)
    commit(repo, f"{variants} trivial variants")
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
    args = parser.parse_args()
    modes = [("sequential", n) for n in args.sequential] + [("runner", n) for n in args.runner]
    for mode, n in modes:
        with tempfile.TemporaryDirectory(prefix="bench-bookkeeping-") as tmp:
            repo = generated(Path(tmp) / "repo", n)
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
                f"bookkeeping: mode={mode} variants={n} stages={stages} seconds={seconds:.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
