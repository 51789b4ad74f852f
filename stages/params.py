"""Load params.yaml, merge each variant's settings and validate them.

pydantic models describe the whole file: resolve_all_variants checks it against `Params`, then
each variant's merged config against `Variant`; `python -m tools.schema` writes their JSON
Schema to params.schema.json, which editors find through params.yaml's first line.
Reading the YAML directly costs ~13 ms; dvc.api.params_show costs ~350 ms per call.
"""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from pydantic import BaseModel

# libyaml's loader when PyYAML has it: every stage process parses params.yaml.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
REPO_ROOT = Path(__file__).resolve().parent.parent
PARAMS_FILE = "params.yaml"
# Where each stage reads and writes, relative to the repository root (dvc.yaml says the same).
RAW_DIR = Path("data/raw")
PREPARED_DIR = Path("data/prepared")
MODELS_DIR = Path("models")
METRICS_DIR = Path("metrics")
PLOTS_DIR = Path("plots")
REPORTS_DIR = Path("reports")
# The search stage's best trial as a variant entry: the searched variant (search.variant).
SEARCH_BEST = Path("search/best.yaml")
# seeds@<variant>'s out, models/<variant>/seeds/: seeds.json lists the seeds, one directory
# per seed (seed_dir) holds what train@<variant> writes for its own.
SEEDS_DIR = "seeds"
SEEDS_FILE = "seeds.json"
# Keras BackupAndRestore state; outside DVC outs, which DVC deletes before a stage reruns.
BACKUP_DIR = Path(".backup")

# thoracic_clean: thoracic's CSV and split rows, with cleaned features (prepare.thoracic_clean).
DATASETS = ("thoracic", "thoracic_clean", "fashion_mnist")
N_CLASSES = {"thoracic": 2, "thoracic_clean": 2, "fashion_mnist": 10}
SOURCES = ("thoracic", "fashion_mnist")  # the datasets fetch downloads (data/raw/<source>)
ACTIVATIONS = ("relu", "tanh", "leaky_relu", "sigmoid", "elu", "selu", "gelu", "linear")
OPTIMIZERS = ("adam", "sgd", "rmsprop", "adamw", "nadam")
SCHEDULES = ("exponential_decay", "cosine_decay_restarts")
LOSSES = {
    "thoracic": (
        "binary_crossentropy",
        "categorical_crossentropy",
        "mean_squared_error",
        "mean_absolute_error",
        "mean_absolute_percentage_error",
        "mean_squared_logarithmic_error",
        "poisson",
    ),
    "fashion_mnist": ("sparse_categorical_crossentropy", "categorical_crossentropy"),
}
LOSSES["thoracic_clean"] = LOSSES["thoracic"]
# The models, importable by name (`from stages.params import Params`), imported on first use.
MODELS = ("Params", "Variant", "VariantEntry", "VariantPatch", "Optimizer", "Parallel")


class StageError(Exception):
    """A failure the user can fix (bad params, data or tracking store): no traceback."""


class ConfigError(StageError, ValueError):
    """A params.yaml value is invalid; the message names the key."""


def variant_arg(description: str | None) -> str:
    """The VARIANT command-line argument of per-variant stages (train, evaluate)."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("variant", help="a key of `variants` in params.yaml")
    return parser.parse_args().variant


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); report a StageError as one line on stderr and exit 1."""
    try:
        main()
    except StageError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(1) from None


def load_params(root: Path | None = None) -> dict[str, Any]:
    """Read params.yaml from the repository root (or `root`); resolve_* validate it."""
    path = (root or REPO_ROOT) / PARAMS_FILE
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    with path.open() as f:
        params = yaml.load(f, Loader=SAFE_LOADER)
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


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; `over` wins, nested mappings merge key by key."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def validate_params(params: dict[str, Any]) -> BaseModel:
    """The whole of params.yaml as a `Params` model, or a ConfigError naming each bad key."""
    from stages.config import models
    from stages.validation import validate

    return validate(models()["Params"], params, "")


def resolve_variant(params: dict[str, Any], name: str) -> dict[str, Any]:
    """Merge train.defaults, the variant's presets (in order) and its own fields; validate.

    The searched variant (search.variant) is not in `variants`: its entry is the search's
    best trial, search/best.yaml (dvc.yaml's train_searched stage depends on that file)."""
    variants = require(params, "variants")
    if name not in variants and name == (params.get("search") or {}).get("variant"):
        return resolve_entry(params, searched_entry(), str(SEARCH_BEST))
    if name not in variants:
        raise ConfigError(f"variants: unknown variant '{name}'; defined: {', '.join(variants)}")
    return resolve_entry(params, variants[name], f"variants.{name}")


def searched_entry(root: Path | None = None) -> dict[str, Any]:
    """The searched variant's entry: search/best.yaml, written by the search stage."""
    path = (root or REPO_ROOT) / SEARCH_BEST
    if not path.is_file():
        raise ConfigError(f"{path}: not found; run `dvc repro search`")
    with path.open() as f:
        return yaml.load(f, Loader=SAFE_LOADER)


def variant_config(params: dict[str, Any], name: str) -> dict[str, Any]:
    """One variant's merged config, once every variant validates: a typo anywhere fails
    before any training."""
    cfgs = resolve_all_variants(params)
    return cfgs[name] if name in cfgs else resolve_variant(params, name)


def study_variants(params: dict[str, Any]) -> list[str]:
    """Every variant the study trains and evaluates: `variants`, then the searched one."""
    return [*require(params, "variants"), require(params, "search.variant")]


def resolve_entry(params: dict[str, Any], entry: Any, key: str) -> dict[str, Any]:
    """A variant entry (dataset, presets, own fields) merged over train.defaults; validated,
    errors prefixed with `key`."""
    from stages.config import models
    from stages.validation import names, validate

    # Its own fields alone first: `dataset` must be among them, and errors name the variant.
    validate(models()["VariantEntry"], entry, key)
    own = dict(entry)
    presets, cfg = require(params, "train.presets"), require(params, "train.defaults")
    for preset in own.pop("presets", []):
        if preset not in presets:
            raise ConfigError(
                f"{key}.presets: unknown preset {preset!r}; allowed: {names(presets)}"
            )
        cfg = _merge(cfg, presets[preset])
    # Plain dicts for the stages; optional settings left unset (momentum) stay absent.
    return validate(models()["Variant"], _merge(cfg, own), key).model_dump(exclude_unset=True)


def resolve_all_variants(params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Validate the whole file, then every variant, so a typo anywhere costs no training."""
    validate_params(params)
    return {name: resolve_variant(params, name) for name in params["variants"]}


def seed_dir(seeds_dir: Path, seed: int) -> Path:
    """Where the seeds stage keeps the training with `seed`: models, summary, history."""
    return seeds_dir / f"seed{seed}"


def project_root() -> Path:
    """Where the user's repository lives: DVC_ROOT during `dvc exp run`, else this checkout."""
    return Path(os.environ.get("DVC_ROOT") or REPO_ROOT).resolve()


def __getattr__(name: str) -> Any:
    """`Params`, `Variant`, ...: the models, defined when stages.config is first imported."""
    if name in MODELS:
        from stages.config import models

        return models()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
