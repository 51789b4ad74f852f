"""dvc.yaml's dependency graph: every stage depends on the code it runs and on its own data
only, so an edit reruns exactly the stages it can change."""

from __future__ import annotations

import ast
import shlex
from pathlib import Path
from typing import Any

import yaml

from stages.formats import split_path
from stages.params import DATASETS, PREPARED_DIR, REPO_ROOT, load_params, resolve_all_variants

# The warm stage runner: it changes no result, so dvc.yaml documents it as not a dependency.
RUNNER = {"tools.prefork", "tools.forkserver", "tools.forkchild"}
SPLITS = ("train", "val", "test")


def dvc_stages() -> dict[str, dict[str, Any]]:
    """Stage name -> its definition (a foreach stage's `do:` block, one per stage name)."""
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    return {name: stage.get("do", stage) for name, stage in stages.items()}


def stage_module(cmd: str) -> str:
    """The module a stage runs: `python -m M ...`, or the stage behind `-m tools.prefork M`."""
    args = shlex.split(cmd)
    module = args[args.index("-m") + 1]
    return args[args.index(module) + 1] if module in RUNNER else module


def module_file(module: str, root: Path) -> Path | None:
    """The file under `root` a module name runs, or None for third-party and standard modules."""
    base = root.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported_modules(path: Path, module: str) -> set[str]:
    """Every module an import statement in `path` runs, at top level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            package = module.split(".")[: -node.level] if node.level else []
            base = ".".join([*package, *([node.module] if node.module else [])])
            # `from pkg import name`: name is a submodule or an attribute of pkg
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in names:
            parts = name.split(".")
            # importing a.b.c runs a, a.b and a.b.c
            found.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    return found


def code_deps(module: str, root: Path = REPO_ROOT) -> set[str]:
    """Files (relative to `root`) of `module` and of the root's modules it imports, transitively."""
    files: set[str] = set()
    todo, seen = [module], set()
    while todo:
        name = todo.pop()
        if name in seen or name in RUNNER:
            continue
        seen.add(name)
        path = module_file(name, root)
        if path is None:
            continue
        # An empty package __init__ runs no code; one with code is a dependency like any module.
        if path.name != "__init__.py" or path.read_text().strip():
            files.add(path.relative_to(root).as_posix())
        todo.extend(imported_modules(path, name))
    return files


def test_import_walk_follows_function_level_relative_and_transitive_imports(tmp_path):
    sources = {
        "pkg/__init__.py": "",
        "pkg/stage.py": "import os\nimport tools.prefork\ndef main():\n    from pkg import a\n",
        "pkg/a.py": "from . import b\n",
        "pkg/b.py": "import numpy as np\n",
        "pkg/unused.py": "",
        "tools/__init__.py": "",
        "tools/prefork.py": "import pkg.unused\n",
    }
    for name, text in sources.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    # the runner and what only it imports are not dependencies; an empty __init__ runs nothing
    assert code_deps("pkg.stage", tmp_path) == {"pkg/stage.py", "pkg/a.py", "pkg/b.py"}
    assert stage_module("python -m tools.prefork stages.train ${key}") == "stages.train"
    assert stage_module("python -m stages.fetch") == "stages.fetch"


def test_every_stage_depends_on_exactly_the_code_it_runs():
    """A stage's .py deps are its module and every repo module it imports, transitively:
    editing any of them makes the stage stale, and no other code edit does."""
    wrong = {}
    for name, stage in dvc_stages().items():
        needed = code_deps(stage_module(stage["cmd"]))
        declared = {dep for dep in stage["deps"] if dep.endswith(".py")}
        if declared != needed:
            wrong[name] = {"missing": sorted(needed - declared), "extra": sorted(declared - needed)}
    assert not wrong, f"dvc.yaml code deps differ from the imports: {wrong}"


def test_prepare_writes_one_file_per_split_and_dataset():
    outs = dvc_stages()["prepare"]["outs"]
    expected = [str(split_path(PREPARED_DIR, s, d)) for s in SPLITS for d in DATASETS]
    assert sorted(outs) == sorted(expected)


def test_each_variant_depends_on_its_own_datasets_files_only():
    """As DVC resolves the foreach stages: train@V, seeds@V and crossval@V read V's dataset's
    train and val files, evaluate@V its test file, reference@D dataset D's train and val files, so a
    change to one dataset's preparation leaves the other dataset's variants up to date."""
    from dvc.repo import Repo

    params = load_params()
    cfgs = resolve_all_variants(params)
    with Repo(str(REPO_ROOT)) as repo:
        data_deps = {
            stage.name: {str(dep.def_path) for dep in stage.deps}
            & {str(split_path(PREPARED_DIR, s, d)) for s in SPLITS for d in DATASETS}
            for stage in repo.index.stages
        }
    for name, cfg in cfgs.items():
        own = {s: str(split_path(PREPARED_DIR, s, cfg["dataset"])) for s in SPLITS}
        assert data_deps[f"train@{name}"] == {own["train"], own["val"]}, name
        assert data_deps[f"evaluate@{name}"] == {own["test"]}, name
        assert data_deps[f"crossval@{name}"] == {own["train"], own["val"]}, name
        assert data_deps[f"seeds@{name}"] == {own["train"], own["val"]}, name
    for dataset in params["crossval"]["datasets"]:
        own = {str(split_path(PREPARED_DIR, s, dataset)) for s in ("train", "val")}
        assert data_deps[f"reference@{dataset}"] == own, dataset
