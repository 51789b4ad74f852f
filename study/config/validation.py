"""pydantic's ValidationError as one line of ConfigError: "dotted.key: problem; ...".

Used by the models of this package: every error names its dotted key.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from study.config.errors import ConfigError
from study.config.paths import PARAMS_FILE

if TYPE_CHECKING:
    from pydantic import BaseModel
    from pydantic_core import ErrorDetails, PydanticCustomError


_TYPES = {
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
}
_BOUNDS = {
    "greater_than": ">",
    "greater_than_equal": ">=",
    "less_than": "<",
    "less_than_equal": "<=",
}
_QUOTED = re.compile(r"'([^']*)'")


def names(names: Any) -> str:
    """Sorted and comma-separated, as every "allowed: ..." list reads."""
    return ", ".join(sorted(map(str, names)))


def fail(message: str, field: str | None = None) -> PydanticCustomError:
    """An error for a validator to raise; `field` extends its location (for model validators)."""
    from pydantic_core import PydanticCustomError

    return PydanticCustomError("config", "{message}", {"message": message, "field": field})


def validate(model: type[BaseModel], data: Any, prefix: str) -> Any:
    """model.model_validate(data); every error becomes part of one ConfigError line."""
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as err:
        lines = dict.fromkeys(_describe(e, data, prefix) for e in err.errors())
        raise ConfigError("; ".join(lines)) from None


def _key(loc: tuple[int | str, ...], data: Any, prefix: str, missing: bool) -> str:
    """The dotted key of an error location, `variants.x.dropout[1]`.

    pydantic also puts union tags (a schedule's name, `rates`) in locations: the parts that
    are no key or index of the data there, except the last part of a missing field's location.
    """
    key, node = prefix, data
    for i, part in enumerate(loc):
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int)
        ):
            node = node[part]
        elif not (missing and i == len(loc) - 1):
            continue
        key += f"[{part}]" if isinstance(part, int) else f".{part}"
    return key.lstrip(".")


def _describe(err: ErrorDetails, data: Any, prefix: str) -> str:
    """One error as `key: problem`, naming the allowed values of a choice or the bound."""
    kind, ctx = err["type"], err.get("ctx", {})
    got = repr(err.get("input"))
    got = got if len(got) <= 60 else got[:57] + "..."
    key = _key(err["loc"], data, prefix, missing=kind == "missing")
    if ctx.get("field"):
        key = f"{key}.{ctx['field']}".lstrip(".")
    if kind == "config":
        text = ctx["message"]
    elif kind == "missing":
        text = "missing"
    elif kind == "literal_error":  # ctx["expected"] reads "'a', 'b' or 'c'"
        text = f"unknown value {got}; allowed: {names(re.findall(_QUOTED, ctx['expected']))}"
    elif kind in _BOUNDS:  # ctx holds the one bound: {"gt": 0}
        text = f"must be {_BOUNDS[kind]} {next(iter(ctx.values())):g}, got {got}"
    elif kind in _TYPES:
        text = f"must be {_TYPES[kind]}, got {got}"
    else:
        text = f"{err['msg']}, got {got}"
    return f"{key or PARAMS_FILE}: {text}"
