"""The first-party source a module runs: the files of every `study` module it imports,
directly or not, inside functions too (read from the source, nothing is imported).

A training's resume key hashes the files its weights come from (study.training.train and what
it imports), and tests/stages/test_dvc_yaml.py checks dvc.yaml's code deps against the packages a
stage imports."""

from __future__ import annotations

import ast
from pathlib import Path

from study.config.paths import REPO_ROOT

PACKAGE = "study"


def _module_file(name: str, root: Path) -> Path | None:
    path = root.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported(path: Path) -> set[str]:
    """Dotted names of the first-party modules a file imports (a `from a.b import c` counts
    a.b, and a.b.c when c is a module)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {n for n in names if n == PACKAGE or n.startswith(f"{PACKAGE}.")}


def module_files(module: str, root: Path = REPO_ROOT) -> list[Path]:
    """Files of `module` and of every first-party module it imports, transitively, with the
    packages' __init__.py on the way (Python runs them too); sorted."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):  # the package __init__ files, then the module
            path = _module_file(".".join(parts[:depth]), root)
            if path is not None and path not in seen:
                seen.add(path)
                todo += sorted(_imported(path))
    return sorted(seen)
