"""params.yaml as one validated `Params` model, and each variant's merged config (`Variant`).

A variant is train.defaults, then its presets in order, then its own fields, merged key by
key and validated; the searched variant's entry is search/best.yaml (the search's best trial).
load_params validates the whole file and every variant, so a typo anywhere fails a stage
before it reads data. `python -m tools.schema` writes the models' JSON Schema to
params.schema.json, which editors find through params.yaml's first line.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, NonNegativeInt, PrivateAttr

from study.config.base import Strict
from study.config.errors import ConfigError
from study.config.paths import REPO_ROOT, SEARCH_BEST, VARIANTS_DIR
from study.config.raw import read_params, read_yaml
from study.config.search import Search
from study.config.sections import (
    Compare,
    Crossval,
    Evaluate,
    Fetch,
    Mlflow,
    Prepare,
    Runner,
    Train,
)
from study.config.validation import names, validate
from study.config.variant import BINARY, Name, Variant, VariantEntry


class Params(Strict):
    """params.yaml, the only source of tunables."""

    seed: NonNegativeInt
    deterministic: bool
    mlflow: Mlflow
    fetch: Fetch
    prepare: Prepare
    train: Train
    # The schema's patternProperties alone would let an editor accept any other name.
    variants: Annotated[
        dict[Name, VariantEntry],
        Field(min_length=1, json_schema_extra={"additionalProperties": False}),
    ]
    evaluate: Evaluate
    crossval: Crossval
    compare: Compare
    search: Search
    runner: Runner
    _root: Path = PrivateAttr(default=REPO_ROOT)
    _resolved: dict[str, Variant] = PrivateAttr(default_factory=dict)

    def variant(self, name: str) -> Variant:
        """The merged, validated config of variant `name` (`variants` or the searched one)."""
        if name not in self._resolved:
            if name in self.variants:
                entry, key = self.variants[name].model_dump(exclude_unset=True), f"variants.{name}"
            elif name == self.search.variant:
                entry = searched_fields(searched_entry(self._root), self.search)
                key = str(SEARCH_BEST)
            else:
                known = names([*self.variants, self.search.variant])
                raise ConfigError(f"variants: unknown variant '{name}'; defined: {known}")
            self._resolved[name] = resolve_entry(self, entry, key)
        return self._resolved[name]

    @property
    def root(self) -> Path:
        """The repository this params.yaml was read from (search/best.yaml, variants/)."""
        return self._root

    def study_variants(self) -> list[str]:
        """Every variant the study trains and evaluates: `variants`, then the searched one."""
        return [*self.variants, self.search.variant]


def load_params(root: Path | None = None) -> Params:
    """params.yaml of the repository (or `root`), validated as a whole with every variant, or
    one ConfigError naming each bad key."""
    params = validate(Params, read_params(root), "")
    params._root = root or REPO_ROOT
    for name in params.variants:
        params.variant(name)
    _check_crossval(params)
    _check_storage(params.search.storage, params.root)
    if params.search.variant in params.variants:
        raise ConfigError(
            f"search.variant: {params.search.variant!r} is a key of variants; the searched"
            " variant needs a name of its own"
        )
    return params


def _check_crossval(params: Params) -> None:
    """Each cross-validated variant is a variant of the dataset it is listed under."""
    for dataset, listed in params.crossval.variants.items():
        for name in listed:
            if name not in params.variants:
                raise ConfigError(
                    f"crossval.variants.{dataset}: unknown variant {name!r};"
                    f" defined: {names(params.variants)}"
                )
            actual = params.variant(name).dataset
            if actual != dataset:
                where = (
                    f"list it under crossval.variants.{actual}"
                    if actual in BINARY
                    else f"only variants of the binary datasets ({names(BINARY)}) are"
                    " cross-validated"
                )
                raise ConfigError(
                    f"crossval.variants.{dataset}: {name!r} is a variant of {actual}; {where}"
                )


def _check_storage(storage: str, root: Path) -> None:
    """search.storage is a URI or a directory inside the repository: the search deletes its
    last experiment there (shutil.rmtree in study/search/tune.py's fit)."""
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", storage):
        return
    # Lexical, as written: `..` and absolute paths cannot reach outside the repository.
    top = Path(os.path.abspath(root))
    path = Path(os.path.normpath(top / storage))
    if path == top or not path.is_relative_to(top):
        raise ConfigError(
            f"search.storage: {storage!r} leads outside the repository {top} or to its top"
            " (the search deletes its last results there); allowed: a directory inside the"
            " repository (relative to it, e.g. .dvc/tmp/search) or a URI (scheme://...)"
        )


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; `over` wins, nested mappings merge key by key."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_entry(params: Params, entry: Any, key: str) -> Variant:
    """A variant entry (dataset, presets, own fields) merged over train.defaults, validated;
    errors are prefixed with `key`."""
    # Its own fields alone first: `dataset` must be among them, and errors name the variant.
    validate(VariantEntry, entry, key)
    own = dict(entry)
    presets = params.train.presets
    cfg = params.train.defaults.model_dump(exclude_unset=True)
    for preset in own.pop("presets", None) or []:
        if preset not in presets:
            raise ConfigError(
                f"{key}.presets: unknown preset {preset!r}; allowed: {names(presets)}"
            )
        cfg = merge(cfg, presets[preset].model_dump(exclude_unset=True))
    return validate(Variant, merge(cfg, own), key)


def config_json(cfg: Variant) -> str:
    """A merged config as the variants stage writes it (variants/<name>.json): the fields
    the merge set, sorted, so the file changes only when the config does."""
    return json.dumps(cfg.model_dump(mode="json", exclude_unset=True), indent=2, sort_keys=True)


def variant_config(params: Params, name: str) -> Variant:
    """The config a stage trains variant `name` with: variants/<name>.json, the file DVC
    tracks for it (written by the variants stage from params.yaml), or for the searched
    variant its merge with search/best.yaml.

    A stage run outside DVC (`python -m stages.train`, `mlflow run`) after a params.yaml edit
    would train a stale file without a word: the file must equal the current merge (and
    search/best.yaml hold search.dataset and search.base as they are now), or one ConfigError says
    which stage to rerun. Both merges are load_params', so the check costs a file read."""
    cfg = params.variant(name)  # an unknown name fails here, naming the defined ones
    if name == params.search.variant:
        _check_searched(params.search, searched_entry(params.root), params.root / SEARCH_BEST)
        return cfg
    path = params.root / VARIANTS_DIR / f"{name}.json"
    if not path.is_file():
        raise ConfigError(f"{path}: not found; run `dvc repro variants`")
    written, current = path.read_text(), config_json(cfg) + "\n"  # as the variants stage writes
    if written != current:
        raise ConfigError(
            f"{path}: stale, {_changes(written, current)} differ from variant {name!r} as"
            " params.yaml merges it now; run `dvc repro variants`"
        )
    return cfg


def searched_fields(best: dict[str, Any], search: Search) -> dict[str, Any]:
    """The searched variant's entry: search/best.yaml (the best trial's fields) with
    search.variant_fields over it, merged when it trains rather than written into best.yaml,
    so an edit of them retrains the searched variant without searching again."""
    return merge(best, search.variant_fields.model_dump(exclude_unset=True))


def _check_searched(search: Search, best: dict[str, Any], path: Path) -> None:
    """search/best.yaml has search.dataset and search.base as the search wrote them there
    (study/search/space.py's searched_variant)."""
    expected = {"dataset": search.dataset, "presets": list(search.base) or None}
    changed = sorted(k for k, v in expected.items() if best.get(k) != v)
    if changed:
        raise ConfigError(
            f"{path}: stale, {', '.join(changed)} differ from search.dataset and search.base"
            " in params.yaml now; run `dvc repro search`"
        )


def _changes(written: str, current: str) -> str:
    """What differs between two variant files: top-level fields, or the file's form."""
    try:
        old = json.loads(written)
    except json.JSONDecodeError:
        return "its content (no JSON)"
    new = json.loads(current)
    if not isinstance(old, dict):
        return "its content (no JSON object)"
    fields = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    return ", ".join(fields) or "its formatting"


def searched_entry(root: Path | None = None) -> dict[str, Any]:
    """The searched variant's entry: search/best.yaml, written by the search stage."""
    path = (root or REPO_ROOT) / SEARCH_BEST
    if not path.is_file():
        raise ConfigError(f"{path}: not found; run `dvc repro search`")
    return read_yaml(path)
