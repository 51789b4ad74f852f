"""Benchmark: the parallel runner's start order, in one invocation on the real data.

  python -m bench.schedule [--quick]

The seed study (bench/run.py's seed_study: its 18 variants and the searched variant from
main's pinned search/best.yaml) under tools/ray_repro.py in two fresh copies: first with no
stage times (DVC's order: a fresh clone before this runner's first run), then with the
times that first run measured (tools/schedule.py: longest path to the end first, as on a
fresh clone of main, which keeps reports/stage_seconds.json, and on every later run). Then
the same variants in one untracked process (bench/loops.py bare). The metrics of the two
parallel runs must be byte-identical. Prints each wall time and a last `schedule:` line.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.run import measure, seed_study
from bench.workspace import copy_repo, dvc_bin, pipeline_env
from stages.params import REPO_ROOT
from tools.prefork import stop_servers
from tools.schedule import load_seconds, save_seconds


def parallel(dest: Path, quick: bool, env: dict[str, str], seconds: dict[str, float]) -> float:
    """A fresh copy of the seed study with these stage times (none: DVC's order), fetched,
    then timed under the parallel runner."""
    repo = copy_repo(dest)
    seed_study(repo, quick)
    save_seconds(repo, seconds)  # writes nothing for none
    subprocess.run([dvc_bin(), "repro", "fetch"], cwd=repo, env=env, check=True)
    stop_servers()  # each run starts with no warm server
    wall, _, out = measure([sys.executable, "-m", "tools.ray_repro"], repo, env)
    starts = [line.split(": ")[1] for line in out.splitlines() if line.endswith(": started")]
    print(f"{dest.name}: {wall:.1f} s; first stages started: {', '.join(starts[:4])}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 epochs per variant")
    args = parser.parse_args()
    runtime = tempfile.TemporaryDirectory(prefix="bench-schedule-")
    os.environ["XDG_RUNTIME_DIR"] = runtime.name  # private warm servers
    env = pipeline_env()
    with runtime, tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        first = Path(tmp) / "dvc_order"
        fifo_s = parallel(first, args.quick, env, {})
        times = load_seconds(first)
        top = sorted(times.items(), key=lambda kv: -kv[1])[:3]
        print("longest stages: " + ", ".join(f"{name} {s:.1f} s" for name, s in top))
        second = Path(tmp) / "longest_first"
        ordered_s = parallel(second, args.quick, env, times)
        differ = sorted(
            p.name
            for p in (first / "metrics").glob("*.json")
            if (second / "metrics" / p.name).read_bytes() != p.read_bytes()
        )
        if differ:
            sys.exit(f"bench: the two parallel runs' metrics differ: {differ}")
        stop_servers()
        bare_s, _, _ = measure(
            [sys.executable, "-m", "bench.loops", "bare", str(first)], REPO_ROOT, env
        )
        print(f"bare: {bare_s:.1f} s")
    print(
        f"schedule: parallel_dvc_order_s={fifo_s:.1f} parallel_s={ordered_s:.1f} "
        f"bare_s={bare_s:.1f} ratio_parallel_vs_bare={ordered_s / bare_s:.2f} "
        f"ratio_dvc_order_vs_bare={fifo_s / bare_s:.2f} metrics_identical={not differ}"
    )


if __name__ == "__main__":
    main()
