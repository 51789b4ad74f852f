"""DVC's side of tools/ray_repro.py: the graph, `dvc repro`'s per-stage checks and recording.

Every DVC internal the runner uses is called here, and only with the DVC version they were
tested with (DVC_TESTED): on another, tools/ray_repro.py runs plain `dvc repro` instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from importlib.metadata import version
from typing import Any

DVC_TESTED = "3.67.1"  # Stage.changed, remove_outs, save, commit, stage_cache, dump_stages...


def dvc_mismatch() -> str | None:
    """Why DVC's internals must not be used here (another DVC is installed), else None."""
    installed = version("dvc")
    if installed == DVC_TESTED:
        return None
    return f"DVC {installed} is installed, but tools/dvc_graph.py was tested with DVC {DVC_TESTED}"


def stage_name(repo: Any, stage: Any) -> str:
    """`name` for the root dvc.yaml's stages, `path/dvc.yaml:name` for others (root-relative,
    unlike Stage.addressing, which is relative to the working directory)."""
    path = os.path.relpath(stage.path, repo.root_dir)
    return stage.name if path == "dvc.yaml" else f"{path}:{stage.name}"


def plan(repo: Any, targets: Iterable[str] = ()) -> dict[str, tuple[Any, set[str]]]:
    """{stage name: (stage, names of the stages it depends on)}, in DVC's topological order."""
    import networkx as nx

    graph = repo.index.graph  # edges point from a stage to the stages it depends on
    stages = [s for t in targets for s in repo.stage.collect(t, with_deps=True)] or list(graph)
    wanted = set(stages)
    order = [s for s in reversed(list(nx.topological_sort(graph))) if s in wanted]
    return {
        stage_name(repo, s): (s, {stage_name(repo, d) for d in graph.successors(s)}) for s in order
    }


def descendants(needs: dict[str, set[str]], name: str) -> set[str]:
    """Every stage that depends on `name`, directly or not."""
    out, frontier = set(), {name}
    while frontier:
        frontier = {s for s, deps in needs.items() if deps & frontier} - out
        out |= frontier
    return out


def prepare_stage(repo: Any, stage: Any) -> str:
    """As `dvc repro` does before running a command: 'up to date', 'restored' or 'run'."""
    from dvc.stage.cache import RunCacheNotFoundError

    if stage.frozen or not stage.cmd or not stage.changed():
        return "up to date"
    stage.remove_outs(ignore_remove=False, force=False)
    try:
        repo.stage_cache.restore(stage)
        return "restored"
    except RunCacheNotFoundError:
        stage.save_deps()
        return "run"


def record(stage: Any) -> None:
    """What `dvc repro` records for a finished stage but the lock file: its deps' and outs'
    hashes (save, which also writes the run-cache entry exactly when Stage.run would) and its
    outputs in the cache (commit). Done as each stage finishes, while others still run."""
    # As Stage.run: a stage with an uncached non-metric, non-plot output has no run-cache.
    uncached = any(not o.use_cache for o in stage.outs if not (o.is_metric or o.is_plot))
    stage.save(run_cache=not uncached)
    stage.commit()


def write_lock(stages: list[Any]) -> None:
    """Recorded stages into their dvc.lock: one write per file (DVC rewrites it whole)."""
    by_file: dict[Any, list[Any]] = {}
    for stage in stages:
        by_file.setdefault(stage.dvcfile, []).append(stage)
    for dvcfile, group in by_file.items():
        dvcfile.dump_stages(group, update_pipeline=False)


def stage_env(repo: Any, stage: Any) -> dict[str, str]:
    """The environment DVC gives a stage command (dvc/stage/run.py: DVC_ROOT, DVC_STAGE)."""
    env = {**os.environ, "DVC_STAGE": stage_name(repo, stage)}
    env.setdefault("DVC_ROOT", repo.root_dir)
    return env
