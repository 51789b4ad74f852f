"""search.space of params.yaml: checked against the Variant model before Ray starts, turned
into Ray Tune distributions, and each sampled trial config turned into the variant it is.

A trial is the variant entry `{dataset: search.dataset, presets: search.base, <sampled
fields>}` (learning_rate, beta_1, ... go under `optimizer`), merged over train.defaults and
validated like any variant (study.config.params.resolve_entry), with epochs =
search.max_epochs. The best trial's entry is search/best.yaml; with search.variant_fields
merged over it when it trains, it is the searched variant.
"""

from __future__ import annotations

from typing import Any

from study.config.errors import ConfigError
from study.config.params import Params, resolve_entry, searched_fields
from study.config.paths import SEARCH_BEST
from study.config.search import SEARCH_FORMS, SEARCH_OPTIMIZER_KEYS, Search
from study.config.validation import names
from study.config.variant import Variant


def distribution(spec: Any) -> tuple[str, list[Any]]:
    """(form, values) of a validated search.space entry: ("uniform", [low, high]), ..."""
    (form,) = (f for f in SEARCH_FORMS if getattr(spec, f) is not None)
    return form, getattr(spec, form)


def check_space(params: Params) -> Search:
    """search.base and every searched value as a variant field over the base variant.

    Each choice, and each bound of a range, is validated alone, so a value no variant could
    have (an unknown activation, dropout 1.5, units 0) fails with one line naming
    search.space.<key>, before any data is read or Ray starts."""
    search = params.search
    presets = params.train.presets
    for preset in search.base:
        if preset not in presets:
            raise ConfigError(f"search.base: unknown preset {preset!r}; allowed: {names(presets)}")
    _check(params, search, {}, "search.base")
    try:  # the searched variant's own fields over a trial's: still a valid variant
        searched_variant(params, search, {})
    except ConfigError as err:
        raise ConfigError(f"search.variant_fields: {str(err).split(': ', 1)[-1]}") from None
    for key, spec in search.space.items():
        form, values = distribution(spec)
        for value in values:  # a range draws floats, also between integer bounds
            value = float(value) if form in ("uniform", "loguniform") else value
            _check(params, search, {key: value}, f"search.space.{key}")
    return search


def _check(params: Params, search: Search, sampled: dict, key: str) -> None:
    try:
        trial_variant(params, search, sampled)
    except ConfigError as err:
        # "units: must be > 0, got 0" -> "search.space.units: must be > 0, got 0"
        raise ConfigError(f"{key}: {str(err).split(': ', 1)[-1]}") from None


def entry(search: Search, sampled: dict[str, Any]) -> dict[str, Any]:
    """The variant entry, as params.yaml's `variants` spell one, of sampled field values."""
    out: dict[str, Any] = {"dataset": search.dataset}
    if search.base:
        out["presets"] = list(search.base)
    for key, value in sampled.items():
        value = value.item() if hasattr(value, "item") else value  # NumPy scalars
        if key in SEARCH_OPTIMIZER_KEYS:
            out.setdefault("optimizer", {})[key] = value
        else:
            out[key] = value
    return out


def trial_variant(params: Params, search: Search, sampled: dict) -> Variant:
    """The merged, validated config a trial trains: its entry, for search.max_epochs."""
    own = {**entry(search, sampled), "epochs": search.max_epochs}
    return resolve_entry(params, own, "")


def searched_variant(params: Params, search: Search, sampled: dict) -> dict[str, Any]:
    """The searched variant's entry (search/best.yaml) for sampled values: their entry,
    validated with search.variant_fields over it (it trains longer than a trial), as
    train_searched merges them (study.config.params.searched_fields)."""
    best = entry(search, sampled)
    resolve_entry(params, searched_fields(best, search), str(SEARCH_BEST))
    return best


def tune_space(space: dict[str, Any]) -> dict[str, Any]:
    """search.space as Ray Tune distributions (OptunaSearch turns them into Optuna's)."""
    from ray import tune

    forms = {
        "choice": tune.choice,
        "uniform": lambda v: tune.uniform(*v),
        "loguniform": lambda v: tune.loguniform(*v),
        "randint": lambda v: tune.randint(v[0], v[1] + 1),  # both bounds included
    }
    return {key: forms[form](values) for key, (form, values) in _forms(space)}


def _forms(space: dict[str, Any]) -> list[tuple[str, tuple[str, list[Any]]]]:
    return [(key, distribution(spec)) for key, spec in space.items()]


def is_log(space: dict[str, Any], key: str) -> bool:
    """Whether a searched field is drawn on a log scale (plotted on one)."""
    return distribution(space[key])[0] == "loguniform"
