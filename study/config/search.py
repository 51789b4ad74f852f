"""The pydantic model of params.yaml's `search` section (study/search)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    model_validator,
)

from study.config.base import Strict
from study.config.validation import fail, names
from study.config.variant import DATASETS, Name, VariantPatch

# search.space keys: the variant fields a trial may vary, and optimizer settings by their own
# name (learning_rate: optimizer.learning_rate). Forms of a searched field's distribution.
SEARCH_OPTIMIZER_KEYS = ("learning_rate", "beta_1", "beta_2", "momentum", "weight_decay")
SEARCH_KEYS = (
    *("depth", "units", "activation", "dropout", "kernel_l2", "activity_l1", "max_norm"),
    *("batch_size", *SEARCH_OPTIMIZER_KEYS),
)
SEARCH_FORMS = ("choice", "uniform", "loguniform", "randint")


Bounds = Annotated[list[float], Field(min_length=2, max_length=2)]


class Distribution(Strict):
    """A searched field: exactly one of choice (its values), uniform or loguniform
    ([low, high]), randint ([low, high], both included)."""

    choice: list[Any] = None
    uniform: Bounds = None
    loguniform: Bounds = None
    randint: Annotated[list[int], Field(min_length=2, max_length=2)] = None

    @model_validator(mode="after")
    def _one_range(self) -> Any:
        given = [form for form in SEARCH_FORMS if getattr(self, form) is not None]
        if len(given) != 1:
            raise fail(f"give exactly one of {names(SEARCH_FORMS)}, got {len(given)}")
        values = getattr(self, given[0])
        if given[0] == "choice":
            if not values:
                raise fail("empty choice list")
            if not all(v is None or isinstance(v, (str, int, float)) for v in values):
                raise fail(f"choices must be numbers, strings, true/false or null: {values}")
        elif values[0] > values[1]:
            raise fail(f"low {values[0]:g} > high {values[1]:g}")
        elif given[0] == "loguniform" and values[0] <= 0:
            raise fail(f"loguniform needs low > 0, got {values[0]:g}")
        return self


def searchable(space: Any) -> Any:
    unknown = sorted(set(space) - set(SEARCH_KEYS)) if isinstance(space, dict) else ()
    if unknown:
        raise fail(f"not a searchable field; allowed: {names(SEARCH_KEYS)}", field=unknown[0])
    return space


class Search(Strict):
    """The search stage: Ray Tune (ASHA + seeded Optuna TPE) on the train and val splits of
    `dataset`; the best trial becomes variant `variant` (search/best.yaml)."""

    variant: Name = Field(description="the searched variant's name; not a key of variants")
    dataset: Literal[DATASETS]
    base: list[str] = Field(description="train.presets under the sampled fields, in order")
    metric: Literal["val_accuracy", "val_loss"]
    trials: PositiveInt
    startup_trials: NonNegativeInt = Field(description="random trials before TPE's")
    max_epochs: PositiveInt
    grace_period: PositiveInt = Field(description="ASHA: epochs before a first stop")
    reduction_factor: Annotated[float, Field(gt=1)]
    concurrent: PositiveInt = Field(description="trials at once")
    cpus_per_trial: PositiveFloat
    time_limit_s: PositiveFloat
    max_failures: NonNegativeInt = Field(description="retries of a failed or lost trial")
    address: str | None = Field(description="a Ray cluster; null: $RAY_ADDRESS, else local")
    num_cpus: PositiveInt | None = Field(description="the local instance's; null = all")
    dashboard: bool
    storage: str = Field(description="Tune's storage, relative to the repo or a URI")
    space: Annotated[dict[str, Distribution], Field(min_length=1), BeforeValidator(searchable)]
    variant_fields: VariantPatch = Field(
        description="over the best trial's fields in the searched variant (e.g. its epochs)"
    )

    @model_validator(mode="after")
    def _grace_within_epochs(self) -> Any:
        if self.grace_period > self.max_epochs:
            raise fail(f"{self.grace_period} > max_epochs {self.max_epochs}", field="grace_period")
        return self
