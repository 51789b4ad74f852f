"""The pydantic models of params.yaml: `Params`, the whole file, from its sections' models.

Errors become one line naming the key (stages/validation.py); `python -m tools.schema` writes
their JSON Schema. Only stages import this (through stages.params' functions, on first use):
tools.prefork imports stages.params before every stage, and pydantic is preloaded in the warm
server the stages run in, not in the client.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    field_validator,
)

from stages.config_base import ClassWeight, Fraction, Strict, one_weight_per_class
from stages.config_data import Fetch, Mlflow, Prepare
from stages.config_search import Search
from stages.config_variant import Optimizer, Variant, VariantEntry, VariantPatch
from stages.params import (
    DATASETS,
    N_CLASSES,
)
from stages.validation import fail


class Train(Strict):
    """TF threads (0 = TF default), the defaults of every variant, and named presets."""

    threads: NonNegativeInt
    defaults: VariantPatch
    presets: dict[str, VariantPatch]


class Diagnostics(Strict):
    """Dead and saturated units and the first layer's gradient norm, on test rows."""

    saturation: Fraction
    batch_size: PositiveInt


class Evaluate(Strict):
    """Test-split evaluation: inference batch size and thoracic's decision threshold."""

    batch_size: PositiveInt
    threshold: Annotated[float, Field(ge=0, le=1)]
    diagnostics: Diagnostics


class Compare(Strict):
    """The comparison report."""

    chart_dpi: PositiveInt


class Parallel(Strict):
    """tools.ray_repro: the DVC graph's stale stages as Ray tasks."""

    num_cpus: PositiveInt | None  # of the local Ray instance; null = every core
    cpus_per_stage: PositiveFloat
    stage_cpus: dict[str, NonNegativeFloat]  # stage name -> CPUs, instead of cpus_per_stage
    ray_driver_stages: list[str]  # stages that run Ray tasks of their own (search)
    max_retries: NonNegativeInt
    stop_timeout_s: PositiveFloat


class Runner(Strict):
    """tools.prefork: run stages as forks of a warm server that preloaded these modules."""

    prefork: bool
    idle_timeout_s: PositiveFloat
    start_timeout_s: PositiveFloat
    preload: list[Annotated[str, Field(min_length=1)]]
    parallel: Parallel


class Logistic(Strict):
    """scikit-learn LogisticRegression on the same folds and features: the reference row."""

    C: PositiveFloat
    max_iter: PositiveInt
    class_weight: ClassWeight = None

    @field_validator("class_weight")
    @classmethod
    def _binary(cls, weights: Any) -> Any:
        return one_weight_per_class(weights, 2)  # cross-validated datasets are binary


class Crossval(Strict):
    """Repeated stratified k-fold on the non-test rows (train + val files) of `datasets`:
    each of their variants refitted per fold, beside the logistic reference and the
    majority class on the same folds."""

    datasets: Annotated[
        list[Literal[tuple(d for d in DATASETS if N_CLASSES[d] == 2)]], Field(min_length=1)
    ]
    folds: Annotated[int, Field(ge=2)]
    repeats: PositiveInt
    logistic: Logistic

    @field_validator("datasets")
    @classmethod
    def _once(cls, datasets: list[str]) -> list[str]:
        if len(set(datasets)) < len(datasets):
            raise fail(f"a dataset is listed twice: {datasets}")
        return datasets


class Seeds(Strict):
    """Trainings per variant, each with its own seed (seed, seed+1, ...): the noise."""

    repeats: PositiveInt


class Params(Strict):
    """params.yaml, the only source of tunables."""

    seed: NonNegativeInt
    deterministic: bool
    mlflow: Mlflow
    fetch: Fetch
    prepare: Prepare
    train: Train
    variants: Annotated[dict[str, VariantEntry], Field(min_length=1)]
    evaluate: Evaluate
    crossval: Crossval
    seeds: Seeds
    compare: Compare
    search: Search
    runner: Runner


def models() -> dict[str, type[BaseModel]]:
    """The models stages.params hands out by name (`from stages.params import Params`)."""
    return {
        m.__name__: m for m in (Params, Variant, VariantEntry, VariantPatch, Optimizer, Parallel)
    }
