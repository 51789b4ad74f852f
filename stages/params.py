"""Load params.yaml, merge each variant's settings and validate them.

Reading the YAML directly costs ~13 ms; dvc.api.params_show costs ~350 ms per call.
"""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

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
# Keras BackupAndRestore state; outside DVC outs, which DVC deletes before a stage reruns.
BACKUP_DIR = Path(".backup")

DATASETS = ("thoracic", "fashion_mnist")
ACTIVATIONS = ("relu", "tanh", "leaky_relu", "sigmoid", "elu", "selu", "gelu", "linear")
OPTIMIZERS = ("adam", "sgd", "rmsprop", "adamw", "nadam")
SCHEDULES = {
    "exponential_decay": {"initial_learning_rate", "decay_steps", "decay_rate"},
    "cosine_decay_restarts": {"initial_learning_rate", "first_decay_steps"},
}
SCHEDULE_OPTIONAL = {
    "exponential_decay": {"staircase"},
    "cosine_decay_restarts": {"t_mul", "m_mul", "alpha"},
}
THORACIC_LOSSES = (
    "binary_crossentropy",
    "categorical_crossentropy",
    "mean_squared_error",
    "mean_absolute_error",
    "mean_absolute_percentage_error",
    "mean_squared_logarithmic_error",
    "poisson",
)
FASHION_LOSSES = ("sparse_categorical_crossentropy", "categorical_crossentropy")
LOSSES = {"thoracic": THORACIC_LOSSES, "fashion_mnist": FASHION_LOSSES}
OPTIMIZER_FIELDS = {"name", "learning_rate", "beta_1", "beta_2", "momentum", "weight_decay"}
VARIANT_FIELDS = {
    "dataset",
    "epochs",
    "batch_size",
    "depth",
    "units",
    "activation",
    "dropout",
    "kernel_l2",
    "activity_l1",
    "max_norm",
    "loss",
    "optimizer",
    "lr_schedule",
    "patience",
    "steps_per_execution",
}


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
    """Read params.yaml from the repository root (or `root`)."""
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


def resolve_variant(params: dict[str, Any], name: str) -> dict[str, Any]:
    """Merge train.defaults, the variant's presets (in order) and its own fields."""
    variants = require(params, "variants")
    if name not in variants:
        raise ConfigError(f"variants: unknown variant '{name}'; defined: {', '.join(variants)}")
    own = dict(variants[name] or {})
    if "dataset" not in own:
        # dvc.yaml's foreach sees only the variant's own fields, not defaults or presets.
        raise ConfigError(
            f"variants.{name}.dataset: missing; every variant states its dataset itself "
            f"(dvc.yaml uses it to pick the variant's data files); "
            f"allowed: {', '.join(sorted(DATASETS))}"
        )
    presets = require(params, "train.presets") or {}
    cfg = require(params, "train.defaults")
    for preset in own.pop("presets", []) or []:
        if preset not in presets:
            raise ConfigError(
                f"variants.{name}.presets: unknown preset '{preset}'; allowed: {', '.join(presets)}"
            )
        cfg = _merge(cfg, presets[preset])
    cfg = _merge(cfg, own)
    validate_variant(name, cfg)
    return cfg


def _positive_int(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{key}: must be a positive integer, got {value!r}")


def _non_negative(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"{key}: must be a number >= 0, got {value!r}")


def _one_of(key: str, value: Any, allowed: tuple[str, ...] | set[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}: unknown value {value!r}; allowed: {', '.join(sorted(allowed))}")


def validate_variant(name: str, cfg: dict[str, Any]) -> None:
    """Raise ConfigError naming the first bad key of a merged variant config."""
    key = f"variants.{name}"
    unknown = set(cfg) - VARIANT_FIELDS
    if unknown:
        raise ConfigError(
            f"{key}: unknown field(s) {', '.join(sorted(unknown))}; "
            f"allowed: presets, {', '.join(sorted(VARIANT_FIELDS))}"
        )
    missing = VARIANT_FIELDS - set(cfg)
    if missing:
        raise ConfigError(f"{key}: missing field(s) {', '.join(sorted(missing))}")
    _one_of(f"{key}.dataset", cfg["dataset"], DATASETS)
    for field in ("epochs", "batch_size", "units", "patience", "steps_per_execution"):
        _positive_int(f"{key}.{field}", cfg[field])
    if isinstance(cfg["depth"], bool) or not isinstance(cfg["depth"], int) or cfg["depth"] < 0:
        raise ConfigError(f"{key}.depth: must be an integer >= 0, got {cfg['depth']!r}")
    _one_of(f"{key}.activation", cfg["activation"], ACTIVATIONS)
    rates = cfg["dropout"] if isinstance(cfg["dropout"], list) else [cfg["dropout"]]
    if isinstance(cfg["dropout"], list) and len(rates) != cfg["depth"]:
        raise ConfigError(
            f"{key}.dropout: a list needs one rate per hidden layer "
            f"(depth {cfg['depth']}), got {len(rates)}"
        )
    for rate in rates:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise ConfigError(f"{key}.dropout: rates must be in [0, 1), got {rate!r}")
    for field in ("kernel_l2", "activity_l1"):
        _non_negative(f"{key}.{field}", cfg[field])
    if cfg["max_norm"] is not None:
        _non_negative(f"{key}.max_norm", cfg["max_norm"])
        if cfg["max_norm"] == 0:
            raise ConfigError(f"{key}.max_norm: must be > 0 or null, got 0")
    _one_of(f"{key}.loss", cfg["loss"], LOSSES[cfg["dataset"]])
    _validate_optimizer(f"{key}.optimizer", cfg["optimizer"])
    if cfg["lr_schedule"] is not None:
        _validate_schedule(f"{key}.lr_schedule", cfg["lr_schedule"])


def _validate_optimizer(key: str, opt: Any) -> None:
    if not isinstance(opt, dict):
        raise ConfigError(f"{key}: must be a mapping with a 'name', got {opt!r}")
    unknown = set(opt) - OPTIMIZER_FIELDS
    if unknown:
        raise ConfigError(
            f"{key}: unknown field(s) {', '.join(sorted(unknown))}; "
            f"allowed: {', '.join(sorted(OPTIMIZER_FIELDS))}"
        )
    _one_of(f"{key}.name", opt.get("name"), OPTIMIZERS)
    for field, value in opt.items():
        if field != "name":
            _non_negative(f"{key}.{field}", value)


def _validate_schedule(key: str, sched: Any) -> None:
    if not isinstance(sched, dict):
        raise ConfigError(f"{key}: must be a mapping with a 'name' or null, got {sched!r}")
    name = sched.get("name")
    _one_of(f"{key}.name", name, set(SCHEDULES))
    fields = set(sched) - {"name"}
    required, optional = SCHEDULES[name], SCHEDULE_OPTIONAL[name]
    if fields - required - optional or required - fields:
        raise ConfigError(
            f"{key}: {name} takes {', '.join(sorted(required))} "
            f"(optional: {', '.join(sorted(optional))}); got {', '.join(sorted(fields))}"
        )
    for field in fields - {"staircase"}:
        _non_negative(f"{key}.{field}", sched[field])


def resolve_all_variants(params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Validate every variant up front, so a typo in the last one costs no training."""
    variants = require(params, "variants")
    if not isinstance(variants, dict) or not variants:
        raise ConfigError("variants: must be a non-empty mapping of name -> settings")
    return {name: resolve_variant(params, name) for name in variants}


def project_root() -> Path:
    """Where the user's repository lives: DVC_ROOT during `dvc exp run`, else this checkout."""
    return Path(os.environ.get("DVC_ROOT") or REPO_ROOT).resolve()
