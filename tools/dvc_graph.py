"""DVC's side of tools/ray_repro.py: the graph, `dvc repro`'s per-stage checks and recording.

Every DVC internal the runner uses is called here, and only with the DVC version they were
tested with (DVC_TESTED): on another, tools/ray_repro.py runs plain `dvc repro` instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from importlib.metadata import version
from typing import Any

# The DVC these internals were tested with: dvc.repo.reproduce's planning, Stage.reproduce,
# changed, remove_outs, save_deps, save, commit and dump, stage_cache.restore, dvc/stage/run.py's
# command split, shell, flags and environment, the lock file's path, serialization and YAML
# (parse_yaml_for_update, dump_yaml: modify_yaml's two halves).
DVC_TESTED = "3.67.1"


def dvc_mismatch() -> str | None:
    """Why DVC's internals must not be used here (another DVC is installed), else None."""
    installed = version("dvc")
    if installed == DVC_TESTED:
        return None
    return f"DVC {installed} is installed, but tools/dvc_graph.py was tested with DVC {DVC_TESTED}"


def stage_name(repo: Any, stage: Any) -> str:
    """`name` for the root dvc.yaml's stages, `path/dvc.yaml:name` for others, the .dvc file
    for a data source's (root-relative, unlike Stage.addressing: relative to the cwd)."""
    path = os.path.relpath(stage.path, repo.root_dir)
    name = getattr(stage, "name", None)  # a .dvc file's stage has none
    return path if name is None else name if path == "dvc.yaml" else f"{path}:{name}"


def stage_names(repo: Any) -> set[str]:
    """The names (stage_name) of every stage in the repository's graph, targeted or not."""
    return {stage_name(repo, stage) for stage in repo.index.stages}


def plan(repo: Any, targets: Iterable[str] = ()) -> dict[str, tuple[Any, set[str]]]:
    """{stage name: (stage, names of the stages it waits for)} of `dvc repro [TARGET...]`, in
    its order: DVC's own collection of the targets (none: ./dvc.yaml), graph (a frozen stage
    cut off from its upstream: get_active_graph) and plan (plan_repro)."""
    from dvc.dvcfile import PROJECT_FILE
    from dvc.repo.reproduce import collect_stages, get_active_graph, plan_repro

    graph = get_active_graph(repo.index.graph)  # edges from a stage to those it depends on
    steps = plan_repro(graph, collect_stages(repo, list(targets) or [PROJECT_FILE]))
    return {
        stage_name(repo, s): (s, {stage_name(repo, d) for d in graph.successors(s)}) for s in steps
    }


def descendants(needs: dict[str, set[str]], name: str) -> set[str]:
    """Every stage that depends on `name`, directly or not."""
    out, frontier = set(), {name}
    while frontier:
        frontier = {s for s, deps in needs.items() if deps & frontier} - out
        out |= frontier
    return out


def prepare_stage(repo: Any, stage: Any) -> str:
    """`dvc repro`'s steps for a stage before its command (Stage.reproduce, Stage.run):
    'up to date'; 'verified' (frozen, or no command: DVC checked and recorded its outputs,
    which are then written like a finished stage's); 'restored' (from the run-cache: to
    record); 'run' (outputs removed: run the command, then record). Raises DVC's errors."""
    from dvc.log import logger
    from dvc.stage.cache import RunCacheNotFoundError

    if stage.frozen or not stage.cmd:  # DVC's own steps: nothing of them runs a command
        if stage.frozen and not stage.is_import:  # as dvc/repo/reproduce.py warns
            msg = "%s is frozen. Its dependencies are not going to be reproduced."
            logger.warning(msg, stage)
        return "verified" if stage.reproduce() else "up to date"
    if not stage.changed():
        return "up to date"
    stage.remove_outs(ignore_remove=False, force=False)
    try:
        repo.stage_cache.restore(stage)
        return "restored"
    except RunCacheNotFoundError:
        stage.save_deps()
        return "run"


def start(stage: Any) -> tuple[list[list[str]], str, dict[str, str]]:
    """How DVC's cmd_run starts the stage's commands (dvc/stage/run.py), with its own helpers:
    each command line (one per line of a string) as the argv DVC runs it, `$SHELL` (else
    /bin/sh) with the flags that keep it from reading rc files (bash --noprofile --norc, zsh
    --no-rcs, fish --no-config); the working directory and environment (DVC_ROOT,
    DVC_STAGE). Run in this process, as DVC reads them: the shell, fish's version check."""
    from dvc.stage.run import (
        _enforce_cmd_list,
        _make_cmd,
        _warn_if_fish,
        get_executable,
        prepare_kwargs,
    )

    executable = get_executable()
    _warn_if_fish(executable)
    kwargs = prepare_kwargs(stage)
    argvs = [_make_cmd(executable, cmd) for cmd in _enforce_cmd_list(stage.cmd)]
    return argvs, str(kwargs["cwd"]), kwargs["env"]


def record(stage: Any) -> None:
    """What `dvc repro` records for a finished stage but the lock file: its deps' and outs'
    hashes (save, which also writes the run-cache entry exactly when Stage.run would) and its
    outputs in the cache (commit). Done as each stage finishes, while others still run."""
    # As Stage.run: a stage with an uncached non-metric, non-plot output has no run-cache.
    uncached = any(not o.use_cache for o in stage.outs if not (o.is_metric or o.is_plot))
    stage.save(run_cache=not uncached)
    stage.commit()


class LockWriter:
    """Writes recorded stages to their dvc.lock (a data source to its .dvc file), as `dvc
    repro` leaves it. DVC (Lockfile.dump_stages) rewrites a stage's entry in place and appends
    a new one; `dvc repro` appends in its plan's `order`, this runner as stages finish, so
    the entries this run added are put back in that order. Each write is DVC's: the whole
    file, by its own YAML emitter.

    The runner holds DVC's repo lock for the run, so a lock file changes only here: it is
    parsed once (DVC's round-trip YAML, 0.53 s of the 0.75 s a write of the study's 92 KB
    dvc.lock took, once per stage) and kept, unless its size or mtime say another hand wrote it.
    """

    def __init__(self, order: Sequence[Any]) -> None:
        self.order = order
        self.added: set[Any] = set()  # stages this run added to a dvc.lock
        self._kept: dict[str, tuple[tuple[int, int], Any]] = {}  # path: (size, mtime), data

    def _load(self, path: str, fs: Any) -> Any:
        from dvc.utils.serialize import parse_yaml_for_update

        try:
            st = os.stat(path)
        except FileNotFoundError:
            return {}
        kept = self._kept.get(path)
        if kept and kept[0] == (st.st_size, st.st_mtime_ns):
            return kept[1]
        with fs.open(path, encoding="utf-8") as fd:
            return parse_yaml_for_update(fd.read(), path)

    def write(self, stages: list[Any]) -> None:
        from dvc.dvcfile import ProjectFile, logger
        from dvc.stage.serialize import to_lockfile
        from dvc.utils import relpath
        from dvc.utils.serialize import dump_yaml

        by_lock: dict[str, list[Any]] = {}
        for stage in stages:
            if isinstance(stage.dvcfile, ProjectFile):
                by_lock.setdefault(stage.dvcfile._lockfile.path, []).append(stage)
            else:  # a .dvc file holds its one stage
                stage.dump(update_pipeline=False)
        for path, group in by_lock.items():
            fs = group[0].repo.fs
            data = self._load(path, fs)
            if not data:
                data["schema"] = "2.0"
                logger.info("Generating lock file '%s'", relpath(path))
            entries = data.setdefault("stages", {})
            modified = False
            for stage in group:
                if stage.name not in entries:
                    self.added.add(stage)
                entry = to_lockfile(stage)[stage.name]
                modified |= entries.get(stage.name, {}) != entry
                entries[stage.name] = entry
            for stage in self.order:  # moved to the end, in order, after the entries from before
                if stage in self.added and stage.dvcfile._lockfile.path == path:
                    entries[stage.name] = entries.pop(stage.name)
            self._kept.pop(path, None)  # not kept if the write fails half-way
            dump_yaml(path, data, fs=fs)
            st = os.stat(path)
            self._kept[path] = ((st.st_size, st.st_mtime_ns), data)
            if modified:
                logger.info("Updating lock file '%s'", relpath(path))
