"""The shared parts of params.yaml's pydantic models: the strict base
model, whose errors list the allowed fields, and types more than one section uses."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    NonNegativeInt,
    PositiveFloat,
    Tag,
    model_validator,
)

from study.config.validation import fail, names


class Strict(BaseModel):
    # Unknown fields are errors (a typo is never ignored); strict types: a quoted "3" or a
    # `true` is no number, as before.
    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        # One error listing the allowed fields instead of pydantic's one per extra key.
        unknown = set(data) - set(cls.model_fields) if isinstance(data, dict) else ()
        if unknown:
            raise fail(f"unknown field(s) {names(unknown)}; allowed: {names(cls.model_fields)}")
        return data


Rate = Annotated[float, Field(ge=0, lt=1)]
Dropout = Annotated[
    Annotated[Rate, Tag("rate")] | Annotated[list[Rate], Tag("rates")],
    # Only the form the value has is checked: one error, not one per form.
    Discriminator(lambda value: "rates" if isinstance(value, list) else "rate"),
]
Fraction = Annotated[float, Field(gt=0, lt=1)]


def class_weight_form(value: Any) -> Any:
    # One error naming every form, instead of pydantic's one per member of the union.
    if value is not None and value != "balanced" and not isinstance(value, dict):
        allowed = "balanced, null, a mapping class -> weight"
        raise fail(f"unknown value {value!r}; allowed: {allowed}")
    if isinstance(value, dict):  # a mapping read back from JSON has its classes as strings
        return {int(k) if isinstance(k, str) and k.isdigit() else k: v for k, v in value.items()}
    return value


ClassWeight = Annotated[
    Annotated[
        Annotated[Literal["balanced"], Tag("name")]
        | Annotated[dict[NonNegativeInt, PositiveFloat], Tag("weights")],
        Discriminator(lambda value: "weights" if isinstance(value, dict) else "name"),
    ]
    | None,
    BeforeValidator(class_weight_form),
    Field(description="balanced (n / (classes * count)), or class -> weight; in fit's loss"),
]


def one_weight_per_class(weights: Any, classes: int | None) -> Any:
    if isinstance(weights, dict) and classes and sorted(weights) != list(range(classes)):
        raise fail(
            f"a mapping needs one weight per class {names(range(classes))},"
            f" got classes {names(weights)}"
        )
    return weights
