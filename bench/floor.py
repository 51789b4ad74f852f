"""DVC's own floor for the study's graph: the same dvc.yaml, params and deps, trivial commands.

  python -m bench.floor REPO    # REPO: a copy made by bench.workspace.copy_repo

Every stage command is replaced by one that writes its outputs (tiny files), so a `dvc repro`
costs only DVC's bookkeeping (hashing, lock writes) and a no-op `dvc repro` only DVC's checks.
Prints `floor: repro_s=N noop_s=N stages=N`.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import yaml

from bench.workspace import commit, dvc_bin, pipeline_env

# Writes each path given (a path without a suffix is a directory: one file inside it).
TOUCH = (
    "import pathlib, sys\n"
    "for p in map(pathlib.Path, sys.argv[1:]):\n"
    "    f = p if p.suffix else p / 'x'\n"
    "    f.parent.mkdir(parents=True, exist_ok=True)\n"
    "    f.write_text('{}')\n"
)


def out_paths(stage: dict) -> list[str]:
    """Output paths of a dvc.yaml stage definition (outs, metrics, plots)."""
    paths = []
    for kind in ("outs", "metrics", "plots"):
        for entry in stage.get(kind, []):
            paths.append(next(iter(entry)) if isinstance(entry, dict) else entry)
    return paths


def trivial(dvc_yaml: dict) -> dict:
    """dvc.yaml with every command replaced by TOUCH of the stage's own outputs."""
    for stage in dvc_yaml["stages"].values():
        body = stage.get("do", stage)
        body["cmd"] = " ".join(["python bench_touch.py", *out_paths(body)])
    return dvc_yaml


def run(repo: Path, *args: str) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run([dvc_bin(), *args], cwd=repo, env=pipeline_env(), check=True,
                          capture_output=True, text=True)  # fmt: skip
    return time.perf_counter() - start, proc.stdout


def main() -> None:
    repo = Path(sys.argv[1])
    path = repo / "dvc.yaml"
    dvc_yaml = trivial(yaml.safe_load(path.read_text()))
    path.write_text(yaml.safe_dump(dvc_yaml, sort_keys=False))
    (repo / "bench_touch.py").write_text(TOUCH)
    commit(repo, "trivial commands")
    repro_s, out = run(repo, "repro")
    noop_s, _ = run(repo, "repro")
    stages = out.count("Running stage")
    print(f"floor: repro_s={repro_s:.2f} noop_s={noop_s:.2f} stages={stages}")


if __name__ == "__main__":
    main()
