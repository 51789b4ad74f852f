"""params.yaml as plain data, for callers that must stay light (the warm runner's client reads
its `runner` section before every stage); study.config.params validates the whole file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from study.config.errors import ConfigError
from study.config.paths import PARAMS_FILE, REPO_ROOT


def read_yaml(path: Path) -> Any:
    """A YAML file's content, read as DVC reads and writes params.yaml: YAML 1.2 (ruamel.yaml's
    safe loader). PyYAML is YAML 1.1, where `1e-05` (what `dvc exp run -S x=0.00001` writes)
    is a string, not a number."""
    with path.open() as f:
        return YAML(typ="safe").load(f)


def read_params(root: Path | None = None) -> dict[str, Any]:
    """params.yaml of the repository root (or `root`), unvalidated."""
    path = (root or REPO_ROOT) / PARAMS_FILE
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    params = read_yaml(path)
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return params


def require(params: dict[str, Any], dotted: str) -> Any:
    """Return params[a][b]... for 'a.b...', or fail naming the missing key."""
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"params.yaml: missing key '{dotted}'")
        node = node[part]
    return node
