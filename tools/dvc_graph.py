"""DVC's side of tools/ray_repro.py: the graph, `dvc repro`'s per-stage checks, the batched
commit, and two measured shortcuts in DVC's params hashing (see params_parsed_once)."""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Iterable, Iterator
from typing import Any


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


@contextlib.contextmanager
def _patched(*patches: tuple[Any, str, Any]) -> Iterator[None]:
    """Set each (object, attribute, value) for the block, then put the originals back."""
    originals = [(obj, name, getattr(obj, name)) for obj, name, _ in patches]
    for obj, name, value in patches:
        setattr(obj, name, value)
    try:
        yield
    finally:
        for obj, name, value in originals:
            setattr(obj, name, value)


@contextlib.contextmanager
def params_parsed_once() -> Iterator[None]:
    """Parse each params file once per content, not once per params dependency and check.

    DVC re-parses params.yaml for every params dependency whenever it hashes one (status,
    save, run-cache): measured on a generated 54-variant graph, 1,193 parses took 24 s of the
    runner's 67 s. The key includes the file's mtime and size, and the runner holds DVC's repo
    lock, so a changed file is parsed again; callers get a copy, as from a fresh parse (kept
    pickled: unpickling a 108-variant params.yaml took 0.11 ms here, copy.deepcopy 0.32 ms).
    """
    import pickle

    import dvc.dependency.param as param

    original, original_dpath, cache = param.load_path, param.dpath, {}

    def load_path(path: str, fs: Any, **kwargs: Any) -> Any:
        info = fs.info(path)
        key = (path, info.get("mtime"), info.get("size"), tuple(sorted(kwargs.items())))
        if key not in cache:
            cache[key] = pickle.dumps(original(path, fs, **kwargs))
        return pickle.loads(cache[key])

    with _patched((param, "load_path", load_path), (param, "dpath", _FastDpath(original_dpath))):
        yield


@contextlib.contextmanager
def file_hashes_memoized() -> Iterator[None]:
    """Hash each regular file once per (inode, mtime, size), not once per check.

    Every stage's checks (`changed`, the run-cache key, save, the run-cache entry) hash its
    dependencies again: ~17 files per stage, four to five times each, each time through DVC's
    hash builder (a progress bar, the state database). The key is what DVC's state database
    keys a file's hash by (its inode, mtime and size), so a changed file is hashed again.
    Only builds that write nothing (dry runs: dependencies and uncached outputs, and every
    hash lookup) are memoized; a cached output's save still stages its file. Directories go
    to DVC every time: their stat does not change with their files.
    """
    import stat

    from dvc.output import Output

    original_meta, original_build, memo = Output._get_hash_meta, Output._build, {}

    def memoized(key: tuple | None, compute: Any) -> Any:
        if key is None:  # not a regular local file: DVC every time
            return compute()
        if key not in memo:
            memo[key] = compute()
        return memo[key]

    def file_key(self: Any, *parts: Any) -> tuple | None:
        try:
            info = os.stat(self.fs_path) if self.fs.protocol == "local" else None
        except OSError:
            info = None
        if info is None or not stat.S_ISREG(info.st_mode):
            return None
        return (self.fs_path, *parts, info.st_ino, info.st_mtime_ns, info.st_size, info.st_mode)

    def get_hash_meta(self: Any) -> Any:
        key = file_key(self, "meta", self.use_cache, self.hash_name)
        meta, hash_info = memoized(key, lambda: original_meta(self))
        return copy.copy(meta), copy.copy(hash_info)  # callers may change theirs

    def build(self: Any, odb: Any, path: str, fs: Any, name: str, **kwargs: Any) -> Any:
        key = None
        if kwargs.get("dry_run") and path == self.fs_path:
            key = file_key(self, "build", odb.path, name)
        odb, meta, obj = memoized(key, lambda: original_build(self, odb, path, fs, name, **kwargs))
        return odb, copy.copy(meta), copy.copy(obj)

    with _patched((Output, "_get_hash_meta", get_hash_meta), (Output, "_build", build)):
        yield


@contextlib.contextmanager
def yaml_in_c() -> Iterator[None]:
    """DVC's YAML through ruamel's C parser and emitter where the bytes are not kept.

    DVC parses dvc.lock with ruamel's round-trip parser (which keeps comments: DVC writes
    none there) before each write, and dumps each run-cache entry with the round-trip
    emitter; both are pure Python. On a generated 108-variant graph (69,100 lock lines) the
    parse took 7.6 s and the C parser 1.8 s, with the same data (the same YAML 1.2 resolver;
    PyYAML's 1.1 would read 1e-06 as a string). dvc.lock is still written by DVC's own
    emitter, byte for byte as `dvc repro` writes it; a run-cache entry's bytes are DVC's
    alone to read (its name is a hash of its content, not of its bytes).
    """
    import dvc.utils.serialize as serialize
    import dvc.utils.serialize._yaml as dvc_yaml
    from dvc.utils.serialize._common import _dump_data
    from ruamel.yaml import YAML

    def parse_for_update(text: str, path: str) -> Any:
        return dvc_yaml.parse_yaml(text, path, typ="safe")

    def dump_yaml(path: str, data: Any, fs: Any = None, **kwargs: Any) -> Any:
        def dump(data: Any, stream: Any) -> None:
            emitter = YAML(typ="safe")
            emitter.default_flow_style = False
            emitter.dump(data, stream)

        return _dump_data(path, data, dumper=dump, fs=fs, **kwargs)

    with _patched(
        (dvc_yaml, "parse_yaml_for_update", parse_for_update), (serialize, "dump_yaml", dump_yaml)
    ):
        yield


@contextlib.contextmanager
def state_links_kept_open() -> Iterator[None]:
    """Record a checked-out file's link in DVC's state database without reopening it.

    State.set_link writes through `with self.links:`, which closes diskcache's SQLite
    connection after every write, so the next one opens and sets it up again: 658 writes
    took 1.63 s on a generated 108-variant graph, 0.10 s on one connection. The same row is
    written (autocommitted, as before); the connection closes with the repo's state.
    """
    from dvc_data.hashfile.state import State
    from dvc_objects.fs.utils import relpath

    def set_link(self: Any, path: str, inode: int, mtime: Any) -> None:
        self.links[relpath(path, self.root_dir)] = (inode, mtime)

    with _patched((State, "set_link", set_link)):
        yield


class _FastDpath:
    """dpath with a direct lookup for plain dotted keys: dpath.get walks the whole params tree
    for each key (5,484 calls, 11.8 s, on the same 54-variant graph). Anything else, a glob or
    a missing key, goes to dpath itself, so results and errors are dpath's."""

    def __init__(self, dpath: Any) -> None:
        self._dpath = dpath

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dpath, name)

    def get(self, obj: Any, glob: str, separator: str = "/", **kwargs: Any) -> Any:
        node = obj
        if not any(c in glob for c in "*?[]"):
            for part in glob.split(separator):
                if not (isinstance(node, dict) and part in node):
                    break
                node = node[part]
            else:
                return node
        return self._dpath.get(obj, glob, separator=separator, **kwargs)


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
