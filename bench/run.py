"""Benchmark: the tracked pipeline vs the untracked notebook, side by side.

  python -m bench.run            # the seed study in full (about an hour here); writes
                                 # reports/bench.md (--report PATH: elsewhere)
  python -m bench.run --quick    # every variant for 2 epochs, for a quick look; writes a
                                 # report only with --report PATH

Runs in temporary copies of the repo reduced to the seed study (the thoracic and Fashion-MNIST
variants and the searched variant from main's pinned search/best.yaml; no search stage, no
cross-validation: crossval.variants' lists empty; see seed_study), each with a fresh dvc.lock:
fetch (untimed), then `dvc repro` (pipeline_s; dvc.lock's lines after it: lock_lines), again
(noop_s), after one Fashion-MNIST param change (onechange_s: must rerun exactly the variants
stage, train@ and evaluate@ of that variant, and compare); the same study in a second copy
under the parallel runner (parallel_s: tools/ray_repro.py, what `make repro` runs; its metrics
must be byte-identical to the sequential run's); DVC's floor for
the same graph (bench/floor.py: trivial commands; floor_repro_s, floor_noop_s), and the
default study's dvc.lock size by the same trick on an unreduced copy (lock_lines_default);
then the same variants in one untracked process with the pipeline's training settings (bare),
again with XLA-compiled steps (bare_xla; xla_vs_plain = bare_xla_s / bare_s), and the
notebook's way (notebook), bench/loops.py. probe_drift: a fixed one-thread workload's time
at the run's end against its start (PROBE), either way. tiny_train_s: the sequential run's shortest
training stage process (a thoracic variant), forked from the warm server. Prints each
figure, every forked stage process's wall time and peak RSS, each target's verdict and a last
`bench:` line with every figure and ratio. The targets and the report: bench/report.py.

Stage processes are forks of a warm server (tools/prefork.py) in a private runtime
directory: `pipeline` starts with no server and pays for starting it; `onechange` finds it
warm, as a user iterating within `runner.idle_timeout_s` does. Peak RSS includes the forks.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.report import REPORT, fmt, judged, report
from bench.stage_costs import stage_costs
from bench.workspace import ForkLog, commit, copy_repo, dvc_bin, pipeline_env
from study.config.paths import METRICS_DIR, REPO_ROOT, REPORTS_DIR, SEARCH_BEST
from study.config.raw import read_params, read_yaml
from tools.prefork import stop_servers
from tools.schedule import load_seconds, save_seconds

CHANGED_VARIANT = "baseline"
COSTED_VARIANT = "thoracic_bce"  # a small training: bench/stage_costs.py
# Like with like: bare and notebook train the same variants as the timed pipeline: the seed
# study's and the searched variant, whose config is main's search/best.yaml, pinned (the
# search itself has its own benchmark, bench/search.py); no cross-validation.
SEED_DATASETS = ("thoracic", "fashion_mnist")
QUICK_EPOCHS = 2
# A fixed workload timed at the run's start and end (probe_drift): the ratios divide figures
# of phases an hour apart, which a VM whose speed drifts skews. One thread: float32 matrix
# products (the trainings' kind of work) and a pure-Python loop; the best of 3.
PROBE = (
    "import time, numpy as np;"
    "a = np.random.default_rng(0).random((192, 192), dtype=np.float32);"
    "best = float('inf');\n"
    "for _ in range(3):\n"
    "    t = time.perf_counter(); [a @ a for _ in range(1500)]; sum(i * i for i in range(10**6));"
    " best = min(best, time.perf_counter() - t)\n"
    "print(best)"
)
# Runs a command and reports the largest RSS among it and every descendant it waited for.
RUSAGE = (
    "import resource, subprocess, sys, json;"
    "rc = subprocess.run(sys.argv[1:]).returncode;"
    "m = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss;"
    "print(json.dumps({'rc': rc, 'maxrss_mb': round(m / 1024)}), file=sys.stderr)"
)


def measure(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int, str]:
    """Wall time, peak RSS (MiB) of the process tree's largest process, and stdout."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", RUSAGE, *cmd], cwd=cwd, env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    usage = json.loads(proc.stderr.strip().splitlines()[-1])
    if usage["rc"] != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return seconds, usage["maxrss_mb"], proc.stdout


def speed_probe(env: dict[str, str]) -> float:
    """Seconds of PROBE on one thread (a shorter time: a faster machine right now)."""
    one = {**env, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=one, capture_output=True, text=True, check=True
    )
    return float(done.stdout)


def stages_run(stdout: str) -> list[str]:
    return sorted(line.split("'")[1] for line in stdout.splitlines() if "Running stage" in line)


def lock_lines(repo: Path) -> int:
    return len((repo / "dvc.lock").read_text().splitlines())


def seed_study(repo: Path, quick: bool) -> dict[str, Any]:
    """Reduce the copy to the seed study's variants and the searched variant (main's pinned
    search/best.yaml), without the search or cross-validation; a fresh dvc.lock (DVC keeps
    the entries of stages gone from dvc.yaml: main's lock may hold an older graph's)."""
    params = read_params(repo)
    params["variants"] = {
        name: v for name, v in params["variants"].items() if v["dataset"] in SEED_DATASETS
    }
    # crossval_<dataset>@ stages are a foreach over these lists: none when empty.
    params["crossval"]["variants"] = {dataset: [] for dataset in params["crossval"]["variants"]}
    best = read_yaml(REPO_ROOT / SEARCH_BEST)
    if quick:
        params["train"]["defaults"]["epochs"] = QUICK_EPOCHS
        # the searched variant's own epochs, merged over search/best.yaml when it trains
        params["search"]["variant_fields"]["epochs"] = QUICK_EPOCHS
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc_path = repo / "dvc.yaml"
    dvc_yaml = yaml.safe_load(dvc_path.read_text())
    dvc_yaml["stages"].pop("search")
    dvc_path.write_text(yaml.safe_dump(dvc_yaml, sort_keys=False))
    (repo / SEARCH_BEST).parent.mkdir(exist_ok=True)
    (repo / SEARCH_BEST).write_text(yaml.safe_dump(best, sort_keys=False))
    (repo / "dvc.lock").unlink(missing_ok=True)
    commit(repo, "seed study")
    return params


def fetch(repo: Path, env: dict[str, str]) -> None:
    """`dvc repro fetch` (untimed: the data's download or copy is not the pipeline's work)."""
    proc = subprocess.run(
        [dvc_bin(), "repro", "fetch"], cwd=repo, env=env, capture_output=True, text=True
    )
    if proc.returncode:
        sys.exit(f"bench: dvc repro fetch failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")


def metrics_bytes(repo: Path) -> dict[str, bytes]:
    """metrics/**/*.json of a run, byte for byte (they hold no wall times)."""
    root = repo / METRICS_DIR
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.json"))}


def floor(repo: Path, env: dict[str, str]) -> dict[str, float]:
    """bench/floor.py on a copy: {repro_s, noop_s, stages, lock_lines}."""
    _, _, out = measure([sys.executable, "-m", "bench.floor", str(repo)], REPO_ROOT, env)
    print(out.strip())
    return {k: float(v) for k, v in (kv.split("=") for kv in out.split("floor: ")[1].split())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_EPOCHS} epochs each")
    parser.add_argument(
        "--report", type=Path, help=f"where to write the report (default: {REPORT}; --quick: none)"
    )
    args = parser.parse_args()
    out_path = args.report or (None if args.quick else REPORT)
    started = datetime.datetime.now(datetime.UTC)
    runtime = tempfile.TemporaryDirectory(prefix="bench-run-")
    # Private warm servers (tools/prefork): the pipeline starts with none running.
    os.environ["XDG_RUNTIME_DIR"] = runtime.name
    # The offline sources `make` gives fetch (Makefile: DATA_MIRRORS).
    os.environ.setdefault("DATA_MIRRORS", str(REPO_ROOT.parent / "shared" / "data"))
    env = pipeline_env()
    forks = ForkLog()
    figures: dict[str, float] = {}
    rss: dict[str, int] = {}
    figures["probe_start_s"] = speed_probe(env)
    with runtime, tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        repo = copy_repo(Path(tmp) / "sequential")
        params = seed_study(repo, args.quick)
        fetch(repo, env)

        figures["pipeline_s"], rss["pipeline"], out = measure([dvc_bin(), "repro"], repo, env)
        runs = forks.new_runs()
        rss["pipeline"] = max([rss["pipeline"], *(r["maxrss_kb"] // 1024 for r in runs)])
        figures["lock_lines"] = lock_lines(repo)
        print(
            f"pipeline: {figures['pipeline_s']:.1f} s, stages: {len(stages_run(out))}, "
            f"{len(runs)} forked stage processes took {sum(r['s'] for r in runs):.1f} s in all, "
            f"the largest peaked at {rss['pipeline']} MiB; dvc.lock: {figures['lock_lines']:.0f}"
            " lines"
        )
        for r in runs:
            print(f"  {r['run']}: {r['s']:.1f} s, {r['maxrss_kb'] // 1024} MiB")
        print((repo / REPORTS_DIR / "compare.md").read_text())
        # What the parallel run must reproduce (before onechange retrains one variant).
        sequential = metrics_bytes(repo)
        figures["noop_s"], _, out = measure([dvc_bin(), "repro"], repo, env)
        print(f"noop: {figures['noop_s']:.2f} s, stages run: {stages_run(out)}")

        variant = params["variants"][CHANGED_VARIANT]
        variant["patience"] = params["train"]["defaults"]["patience"] + 1
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        figures["onechange_s"], _, out = measure([dvc_bin(), "repro"], repo, env)
        ran = stages_run(out)
        print(f"onechange ({CHANGED_VARIANT}.patience): {figures['onechange_s']:.1f} s, ran {ran}")
        # The variants stage reads every variant, but rewrites only the changed one's file.
        stages = ("variants", f"train@{CHANGED_VARIANT}", f"evaluate@{CHANGED_VARIANT}", "compare")
        if ran != sorted(stages):
            sys.exit(f"bench: one change reran {ran}, expected {sorted(stages)}")
        forks.new_runs()
        # Where a small training's and evaluation's seconds go, the warm server still running.
        costs = stage_costs(repo, COSTED_VARIANT, 1 if args.quick else 3)

        # The same study in parallel (tools/ray_repro.py, `make repro`), from no warm server.
        stop_servers()
        par = copy_repo(Path(tmp) / "parallel")
        seed_study(par, args.quick)
        # As on a fresh clone of main: the stage times of main's last `make repro`, by which
        # the runner orders its stages (tools/schedule.py).
        save_seconds(par, load_seconds(REPO_ROOT))
        fetch(par, env)
        runner = [sys.executable, "-m", "tools.ray_repro"]
        figures["parallel_s"], rss["parallel"], out = measure(runner, par, env)
        par_runs = forks.new_runs()
        rss["parallel"] = max([rss["parallel"], *(r["maxrss_kb"] // 1024 for r in par_runs)])
        differ = sorted(
            name for name, data in metrics_bytes(par).items() if sequential.get(name) != data
        )
        print(
            f"parallel: {figures['parallel_s']:.1f} s, {len(par_runs)} forked stage processes took"
            f" {sum(r['s'] for r in par_runs):.1f} s in all; metrics identical to sequential"
            f" byte for byte: {not differ}"
        )
        if differ or len(sequential) != len(metrics_bytes(par)):
            sys.exit(f"bench: the parallel run's metrics differ from the sequential's: {differ}")

        stop_servers()
        floor_repo = copy_repo(Path(tmp) / "floor")  # same graph, trivial commands
        seed_study(floor_repo, args.quick)
        found = floor(floor_repo, env)
        figures["floor_repro_s"], figures["floor_noop_s"] = found["repro_s"], found["noop_s"]
        if found["lock_lines"] != figures["lock_lines"]:  # then lock_lines_default is off too
            print(f"warning: the floor's dvc.lock has {found['lock_lines']:.0f} lines, the real"
                  f" run's {figures['lock_lines']:.0f}")  # fmt: skip
        default_repo = copy_repo(Path(tmp) / "default")  # the default study's whole graph
        figures["lock_lines_default"] = floor(default_repo, env)["lock_lines"]
        loops = {  # on the parallel copy: the pipeline's configs
            "bare": ["bare", str(par), "--jit-compile", "false"],
            "bare_xla": ["bare", str(par), "--jit-compile", "true"],
            "notebook": ["notebook", str(par)],
        }
        for mode, loop_args in loops.items():
            cmd = [sys.executable, "-m", "bench.loops", *loop_args]
            seconds, rss[mode], out = measure(cmd, REPO_ROOT, env)
            figures[f"{mode}_s"] = seconds
            print(f"{mode}: {seconds:.1f} s, peak RSS {rss[mode]} MiB")
            for line in out.splitlines():
                print(f"  {line}")

    figures["probe_end_s"] = speed_probe(env)
    probe = figures["probe_end_s"] / figures["probe_start_s"]
    figures["probe_drift"] = max(probe, 1 / probe)  # either way: slower or faster
    figures["peak_rss_mb"] = max(rss["pipeline"], rss["parallel"])
    figures["ratio_vs_bare"] = figures["pipeline_s"] / figures["bare_s"]
    figures["ratio_vs_notebook"] = figures["pipeline_s"] / figures["notebook_s"]
    figures["noop_vs_floor"] = figures["noop_s"] / figures["floor_noop_s"]
    figures["ratio_parallel_vs_bare"] = figures["parallel_s"] / figures["bare_s"]
    figures["ratio_parallel_vs_notebook"] = figures["parallel_s"] / figures["notebook_s"]
    figures["xla_vs_plain"] = figures["bare_xla_s"] / figures["bare_s"]
    figures["tiny_train_s"] = min(r["s"] for r in runs if r["run"].startswith("stages.train "))
    print(f"peak RSS (MiB): {rss}")
    for what, value, limit, met in judged(figures):
        print(f"target: {what}: {fmt(value)} <= {fmt(limit)}: {'pass' if met else 'FAIL'}")
    bench_line = "bench: " + " ".join(
        f"{k}={v:.0f}" if k.startswith(("lock_", "peak_")) else f"{k}={v:.2f}"
        for k, v in figures.items()
    )
    if out_path is not None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        quick_epochs = QUICK_EPOCHS if args.quick else None
        out_path.write_text(report(figures, runs, quick_epochs, started, bench_line, costs))
        print(f"report: {out_path}")
    print(bench_line)


if __name__ == "__main__":
    main()
