"""Benchmark: the tracked pipeline vs the untracked notebook, side by side.

  python -m bench.run            # the full default study (about an hour here)
  python -m bench.run --quick    # every variant for 2 epochs, for a quick look

Runs in a temporary copy of the repo reduced to the seed study (its 18 variants and the
searched variant from main's pinned search/best.yaml; no search, no cross-validation: see
seed_study): fetch (untimed), then `dvc repro` (pipeline), again
(noop), after one Fashion-MNIST param change (onechange); the same study in a second copy
under the parallel runner (parallel: tools/ray_repro.py, what `make repro` runs; its
metrics must be byte-identical), then the same variants in one untracked process with the
pipeline's training settings (bare) and the notebook's way (notebook), DVC's own floor for
the same graph (bench/floor.py: trivial commands). Prints each wall time and peak RSS, and a
last `bench:` line.

Stage processes are forks of a warm server (tools/prefork.py) in a private runtime
directory: `pipeline` starts with no server and pays for starting it; `onechange` finds it
warm, as a user iterating within `runner.idle_timeout_s` does. Peak RSS includes the forks.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.workspace import commit, copy_repo, dvc_bin, pipeline_env
from stages.params import REPO_ROOT, SEARCH_BEST
from tools.prefork import socket_dir, stop_servers
from tools.schedule import load_seconds, save_seconds

CHANGED_VARIANT = "baseline"
# Like with like: bare and notebook train the same variants as the timed pipeline: the seed
# study's 18 and the searched variant, whose config is main's search/best.yaml, pinned (the
# search itself has its own benchmark, bench/search.py); cross-validation is off (crossval@V
# stages only write their cv.json without folds).
SEED_DATASETS = ("thoracic", "fashion_mnist")
QUICK_EPOCHS = 2
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


def stages_run(stdout: str) -> list[str]:
    return sorted(line.split("'")[1] for line in stdout.splitlines() if "Running stage" in line)


def forked_runs() -> list[dict]:
    """Stage processes the warm servers forked so far: label, wall seconds, peak RSS."""
    lines = "".join(p.read_text() for p in socket_dir().glob("*.log")).splitlines()
    return [json.loads(line) for line in lines if line.startswith('{"run"')]


def seed_study(repo: Path, quick: bool) -> dict:
    """Reduce the copy to the seed study's variants and the searched variant (main's pinned
    search/best.yaml), without the search or cross-validation."""
    params_path, dvc_path = repo / "params.yaml", repo / "dvc.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["variants"] = {
        name: v for name, v in params["variants"].items() if v["dataset"] in SEED_DATASETS
    }
    # A dataset none of these variants uses (the list may not be empty): no folds are fitted.
    params["crossval"]["datasets"] = ["thoracic_clean"]
    if quick:
        params["train"]["defaults"]["epochs"] = QUICK_EPOCHS
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    dvc_yaml = yaml.safe_load(dvc_path.read_text())
    for name in ("search", "reference"):  # reference: per cross-validated dataset
        dvc_yaml["stages"].pop(name)
    dvc_path.write_text(yaml.safe_dump(dvc_yaml, sort_keys=False))
    (repo / SEARCH_BEST).parent.mkdir(exist_ok=True)
    (repo / SEARCH_BEST).write_bytes((REPO_ROOT / SEARCH_BEST).read_bytes())
    commit(repo, "seed study")
    return params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_EPOCHS} epochs each")
    args = parser.parse_args()
    runtime = tempfile.TemporaryDirectory(prefix="bench-run-")
    # Private warm servers (tools/prefork): the pipeline starts with none running.
    os.environ["XDG_RUNTIME_DIR"] = runtime.name
    env = pipeline_env()
    with runtime, tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        repo = copy_repo(Path(tmp) / "sequential")
        params_path = repo / "params.yaml"
        params = seed_study(repo, args.quick)
        subprocess.run([dvc_bin(), "repro", "fetch"], cwd=repo, env=env, check=True)
        figures: dict[str, float] = {}
        rss: dict[str, int] = {}

        figures["pipeline_s"], rss["pipeline"], out = measure([dvc_bin(), "repro"], repo, env)
        runs = forked_runs()
        rss["pipeline"] = max([rss["pipeline"], *(r["maxrss_kb"] // 1024 for r in runs)])
        in_stages = sum(r["s"] for r in runs)
        print(
            f"pipeline: {figures['pipeline_s']:.1f} s, stages: {len(stages_run(out))}, "
            f"{len(runs)} forked stage processes took {in_stages:.1f} s in all, "
            f"the largest peaked at {rss['pipeline']} MiB"
        )
        for r in runs:
            print(f"  {r['run']}: {r['s']:.1f} s, {r['maxrss_kb'] // 1024} MiB")
        print((repo / "reports" / "compare.md").read_text())
        # What the parallel run must reproduce byte for byte (before onechange retrains one).
        sequential = {p.name: p.read_bytes() for p in (repo / "metrics").glob("*.json")}
        figures["noop_s"], _, out = measure([dvc_bin(), "repro"], repo, env)
        print(f"noop: {figures['noop_s']:.2f} s, stages run: {stages_run(out)}")

        variant = params["variants"][CHANGED_VARIANT]
        variant["patience"] = params["train"]["defaults"]["patience"] + 1
        params_path.write_text(yaml.safe_dump(params, sort_keys=False))
        figures["onechange_s"], _, out = measure([dvc_bin(), "repro"], repo, env)
        ran = stages_run(out)
        print(f"onechange ({CHANGED_VARIANT}.patience): {figures['onechange_s']:.1f} s, ran {ran}")
        # crossval@V and seeds@V too: a variant's params are theirs (no folds, one seed here).
        per_variant = ("crossval", "evaluate", "seeds", "train")
        expected = sorted(["compare", *(f"{s}@{CHANGED_VARIANT}" for s in per_variant)])
        if ran != expected:
            sys.exit(f"bench: one change reran {ran}, expected {expected}")

        # The same study in parallel (tools/ray_repro.py, `make repro`), from no warm server.
        stop_servers()
        par = copy_repo(Path(tmp) / "parallel")
        seed_study(par, args.quick)
        # As on a fresh clone of main: the stage times of main's last `make repro`, by which
        # the runner orders its stages (tools/schedule.py).
        save_seconds(par, load_seconds(REPO_ROOT))
        subprocess.run([dvc_bin(), "repro", "fetch"], cwd=par, env=env, check=True)
        runner = [sys.executable, "-m", "tools.ray_repro"]
        figures["parallel_s"], rss["parallel"], out = measure(runner, par, env)
        differ = sorted(
            name
            for name, data in sequential.items()
            if (par / "metrics" / name).read_bytes() != data
        )
        same = not differ
        print(f"parallel: {figures['parallel_s']:.1f} s, metrics identical to sequential: {same}")
        if differ:
            sys.exit(f"bench: the parallel run's metrics differ from the sequential's: {differ}")

        stop_servers()
        floor_repo = copy_repo(Path(tmp) / "floor")  # same graph, trivial commands
        seed_study(floor_repo, args.quick)
        _, _, out = measure([sys.executable, "-m", "bench.floor", str(floor_repo)], REPO_ROOT, env)
        floor = dict(kv.split("=") for kv in out.split("floor: ")[1].split())
        figures["floor_repro_s"], figures["floor_noop_s"] = (
            float(floor["repro_s"]),
            float(floor["noop_s"]),
        )
        print(out.strip())
        for mode in ("bare", "notebook"):
            cmd = [sys.executable, "-m", "bench.loops", mode, str(repo)]
            seconds, rss[mode], out = measure(cmd, REPO_ROOT, env)
            figures[f"{mode}_s"] = seconds
            print(f"{mode}: {seconds:.1f} s, peak RSS {rss[mode]} MiB")
            for line in out.splitlines():
                print(f"  {line}")

    ratio_nb = figures["pipeline_s"] / figures["notebook_s"]
    ratio_bare = figures["pipeline_s"] / figures["bare_s"]
    ratio_parallel = figures["parallel_s"] / figures["bare_s"]
    print(f"peak RSS (MiB): {rss}")
    print(
        f"bench: notebook_s={figures['notebook_s']:.1f} bare_s={figures['bare_s']:.1f} "
        f"pipeline_s={figures['pipeline_s']:.1f} noop_s={figures['noop_s']:.2f} "
        f"onechange_s={figures['onechange_s']:.1f} ratio_vs_notebook={ratio_nb:.2f} "
        f"ratio_vs_bare={ratio_bare:.2f} peak_rss_mb={rss['pipeline']} "
        f"floor_repro_s={figures['floor_repro_s']:.1f} floor_noop_s={figures['floor_noop_s']:.2f} "
        f"noop_vs_floor={figures['noop_s'] / figures['floor_noop_s']:.2f} "
        f"parallel_s={figures['parallel_s']:.1f} ratio_parallel_vs_bare={ratio_parallel:.2f}"
    )


if __name__ == "__main__":
    main()
