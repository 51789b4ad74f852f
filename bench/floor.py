"""DVC's own floor for a study's graph: the same dvc.yaml, params and deps, trivial commands.

  python -m bench.floor REPO    # REPO: a copy made by bench.workspace.copy_repo

dvc.yaml stays as it is; `dvc repro` runs with a stand-in `python` first on PATH, which
ignores its arguments and writes the outputs of the stage DVC runs (DVC_STAGE) as tiny files.
So a `dvc repro` costs only DVC's bookkeeping (hashing, lock writes) and a no-op `dvc repro`
only DVC's checks. A directory output gets the files other stages depend on inside it (the
variants stage's variants/<name>.json, which each train@<name> reads), else one file. dvc.lock
then has the same entries (commands, paths, params) as after the real commands: its line
count is the real graph's, without training anything. Starts from no dvc.lock. Prints
`floor: repro_s=N noop_s=N stages=N lock_lines=N`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.workspace import commit, dvc_bin, pipeline_env
from tools.dvc_graph import stage_name

# The stand-in for `python` in every stage command: the files of bench_plan.json's entry for
# the stage DVC runs (DVC sets DVC_STAGE), each written with "{}".
STAND_IN = """#!{python}
import json, os, pathlib
for name in json.loads(pathlib.Path({plan!r}).read_text())[os.environ["DVC_STAGE"]]:
    path = pathlib.Path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{{}}")
"""


def touch_plan(repo: Path) -> dict[str, list[str]]:
    """Per stage of the expanded graph (DVC's own: foreach stages resolved), the files its
    stand-in command writes: each output file; inside a directory output (no suffix) the files
    other stages depend on there, else one file `x`. Every command must start with `python`."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    with Repo(str(repo)) as dvc_repo:
        stages = list(dvc_repo.index.stages)
        deps = {d.def_path for s in stages for d in s.deps if not isinstance(d, ParamsDependency)}
        plan = {}
        for stage in stages:
            commands = stage.cmd if isinstance(stage.cmd, list) else [stage.cmd]
            if not all(cmd.startswith("python ") for cmd in commands):
                sys.exit(f"floor: {stage}: a command without `python`: {stage.cmd}")
            files = []
            for out in (o.def_path for o in stage.outs):
                inside = sorted(d for d in deps if d.startswith(f"{out}/"))
                files += inside or [out if Path(out).suffix else f"{out}/x"]
            plan[stage_name(dvc_repo, stage)] = files  # DVC_STAGE, run from the root
    return plan


def stand_in(plan: dict[str, list[str]], where: Path) -> Path:
    """A directory holding the stand-in `python` for this plan (to put first on PATH)."""
    plan_file = where / "bench_plan.json"
    plan_file.write_text(json.dumps(plan, indent=1) + "\n")
    python = where / "python"
    python.write_text(STAND_IN.format(python=sys.executable, plan=str(plan_file)))
    python.chmod(0o755)
    return where


def run(repo: Path, bin_dir: Path, *args: str) -> tuple[float, str]:
    env = pipeline_env()
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    start = time.perf_counter()
    proc = subprocess.run([dvc_bin(), *args], cwd=repo, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"floor: dvc {' '.join(args)} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return time.perf_counter() - start, proc.stdout


def main() -> None:
    repo = Path(sys.argv[1])
    # A fresh lock: DVC never drops the entries of stages gone from dvc.yaml (a copy of
    # main's dvc.lock may hold an older graph's), and lock_lines is this graph's size.
    if (repo / "dvc.lock").exists():
        (repo / "dvc.lock").unlink()
        commit(repo, "no dvc.lock")
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        bin_dir = stand_in(touch_plan(repo), Path(tmp))
        repro_s, out = run(repo, bin_dir, "repro")
        noop_s, _ = run(repo, bin_dir, "repro")
    stages = out.count("Running stage")
    lock_lines = len((repo / "dvc.lock").read_text().splitlines())
    print(
        f"floor: repro_s={repro_s:.2f} noop_s={noop_s:.2f} stages={stages} lock_lines={lock_lines}"
    )


if __name__ == "__main__":
    main()
