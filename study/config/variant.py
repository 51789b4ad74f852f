"""A variant's pydantic models: `Variant` (merged and complete), `VariantPatch` (some fields:
train.defaults, presets, search.variant_fields) and `VariantEntry` (a key of `variants`)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from study.config.base import ClassWeight, Dropout, Strict, one_weight_per_class
from study.config.validation import fail, names

# thoracic_clean: thoracic's CSV and split rows, with cleaned features (prepare.thoracic_clean).
DATASETS = ("thoracic", "thoracic_clean", "fashion_mnist")
N_CLASSES = {"thoracic": 2, "thoracic_clean": 2, "fashion_mnist": 10}
BINARY = tuple(d for d in DATASETS if N_CLASSES[d] == 2)
ACTIVATIONS = ("relu", "tanh", "leaky_relu", "sigmoid", "elu", "selu", "gelu", "linear")
OPTIMIZERS = ("adam", "sgd", "rmsprop", "adamw", "nadam")
SCHEDULES = ("exponential_decay", "cosine_decay_restarts")
_BINARY_LOSSES = (
    "binary_crossentropy",
    "categorical_crossentropy",
    "mean_squared_error",
    "mean_absolute_error",
    "mean_absolute_percentage_error",
    "mean_squared_logarithmic_error",
    "poisson",
)
# A variant's name becomes paths (models/<name>, .backup/<name>, variants/<name>.json,
# plots/history/<name>.csv): no separator, no `..`, no hidden or empty name.
NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_-]*$"


def name_form(value: Any) -> Any:
    # Before pydantic's pattern check, whose message would not say what a name may be.
    if isinstance(value, str) and not re.fullmatch(NAME_PATTERN, value):
        raise fail(
            f"invalid name {value!r} (it becomes a file name); allowed: letters, digits, _ and"
            " -, starting with a letter or digit"
        )
    return value


Name = Annotated[str, Field(pattern=NAME_PATTERN), BeforeValidator(name_form)]

LOSSES = {
    "thoracic": _BINARY_LOSSES,
    "thoracic_clean": _BINARY_LOSSES,
    "fashion_mnist": ("sparse_categorical_crossentropy", "categorical_crossentropy"),
}


class Optimizer(Strict):
    """A Keras optimizer (`name`) and its arguments; those left out keep Keras' defaults."""

    name: Literal[OPTIMIZERS]
    learning_rate: NonNegativeFloat = None
    beta_1: NonNegativeFloat = None
    beta_2: NonNegativeFloat = None
    momentum: NonNegativeFloat = None
    weight_decay: NonNegativeFloat = None


# A schedule without initial_learning_rate starts from the optimizer's learning_rate, so a
# searched (or swept) rate and its decay combine: search.variant_fields can add a schedule.
START = "left out: the optimizer's learning_rate (Keras' default if it has none)"


class ExponentialDecay(Strict):
    """keras.optimizers.schedules.ExponentialDecay, replacing the optimizer's learning_rate."""

    name: Literal["exponential_decay"]
    initial_learning_rate: NonNegativeFloat = Field(None, description=START)
    decay_steps: PositiveInt
    decay_rate: NonNegativeFloat
    staircase: bool = None


class CosineDecayRestarts(Strict):
    """keras.optimizers.schedules.CosineDecayRestarts, replacing the learning_rate."""

    name: Literal["cosine_decay_restarts"]
    initial_learning_rate: NonNegativeFloat = Field(None, description=START)
    first_decay_steps: PositiveInt
    t_mul: NonNegativeFloat = None
    m_mul: NonNegativeFloat = None
    alpha: NonNegativeFloat = None


class ReduceLROnPlateau(Strict):
    """keras.callbacks.ReduceLROnPlateau on val_loss (what EarlyStopping and the best-only
    checkpoint watch): the learning rate times `factor` after `patience` epochs without a
    better val_loss. Epoch-based, so it does not depend on the batch size as decay_steps do."""

    factor: Annotated[float, Field(gt=0, lt=1)]
    patience: PositiveInt
    min_lr: NonNegativeFloat = None
    cooldown: NonNegativeInt = None
    min_delta: NonNegativeFloat = None


def schedule_name(value: Any) -> Any:
    # pydantic's error for a missing or unknown `name` would not list the names.
    if isinstance(value, dict) and value.get("name") not in SCHEDULES:
        got = f"unknown value {value['name']!r}" if "name" in value else "missing"
        raise fail(f"{got}; allowed: {names(SCHEDULES)}", field="name")
    return value


Schedule = Annotated[
    ExponentialDecay | CosineDecayRestarts,
    Field(discriminator="name"),
    BeforeValidator(schedule_name),
]


class Checks(Strict):
    # Between fields of a variant, where both are given: also in train.defaults, presets
    # and a variant's own fields (VariantPatch), so the first check names the right key.

    @field_validator("loss", mode="before", check_fields=False)
    @classmethod
    def _loss_fits_dataset(cls, loss: Any, info: ValidationInfo) -> Any:
        allowed = LOSSES.get(info.data.get("dataset"), ())  # absent if not given or bad
        if allowed and loss not in allowed:
            raise fail(f"unknown value {loss!r}; allowed: {names(allowed)}")
        return loss

    @field_validator("dropout", check_fields=False)
    @classmethod
    def _one_rate_per_layer(cls, dropout: Any, info: ValidationInfo) -> Any:
        depth = info.data.get("depth")
        if isinstance(dropout, list) and depth is not None and len(dropout) != depth:
            raise fail(
                f"a list needs one rate per hidden layer (depth {depth}), got {len(dropout)}"
            )
        return dropout

    @field_validator("reduce_lr_on_plateau", check_fields=False)
    @classmethod
    def _one_rate_policy(cls, plateau: Any, info: ValidationInfo) -> Any:
        # Keras cannot set the rate of an optimizer that follows a schedule (TypeError).
        if plateau is not None and info.data.get("lr_schedule") is not None:
            raise fail("cannot be combined with an lr_schedule; set lr_schedule: null")
        return plateau

    @field_validator("class_weight", check_fields=False)
    @classmethod
    def _one_weight_per_class(cls, weights: Any, info: ValidationInfo) -> Any:
        # N_CLASSES has no entry if dataset is not given (presets) or bad
        return one_weight_per_class(weights, N_CLASSES.get(info.data.get("dataset")))


class Variant(Checks):
    """A variant's merged config: train.defaults, its presets in order, its own fields."""

    dataset: Literal[DATASETS]
    epochs: PositiveInt
    batch_size: PositiveInt
    depth: NonNegativeInt = Field(description="hidden Dense layers; 0 = softmax regression")
    units: PositiveInt
    activation: Literal[ACTIVATIONS]
    dropout: Dropout = Field(description="a rate after every hidden layer, or one per layer")
    kernel_l2: NonNegativeFloat
    activity_l1: NonNegativeFloat
    max_norm: PositiveFloat | None
    loss: Literal[tuple(dict.fromkeys(LOSSES["thoracic"] + LOSSES["fashion_mnist"]))]
    optimizer: Optimizer
    lr_schedule: Schedule | None
    reduce_lr_on_plateau: ReduceLROnPlateau | None
    patience: PositiveInt = Field(description="EarlyStopping patience (epochs) on val_loss")
    steps_per_execution: PositiveInt
    class_weight: ClassWeight = None  # None: every example weighs 1
    seeds: PositiveInt = Field(
        description="trainings with seed, seed+1, ...: evaluate and compare show their spread"
    )


def patch(model: type[Strict], name: str, doc: str, **fields: Any) -> type[Strict]:
    """`model` with every field optional: defaults, presets and variants give only some."""
    optional = {
        k: (f.rebuild_annotation(), Field(None, description=f.description))
        for k, f in model.model_fields.items()
    }
    base = model.__bases__[0]  # Checks for a Variant
    return create_model(name, __base__=base, __doc__=doc, **{**optional, **fields})


OptimizerPatch = patch(Optimizer, "OptimizerPatch", "Merged key by key into the inherited one.")
VariantPatch = patch(
    Variant,
    "VariantPatch",
    "Variant fields, each optional; train.defaults, then presets, then the variant's own.",
    optimizer=(OptimizerPatch, None),
)


class VariantEntry(VariantPatch):
    """A variant: its dataset, presets (after train.defaults, in order) and own fields."""

    dataset: Literal[DATASETS] = Field(description="stated by every variant itself")
    presets: list[str] = Field(None, description="keys of train.presets, applied in order")

    @model_validator(mode="before")
    @classmethod
    def _states_dataset(cls, data: Any) -> Any:
        # dvc.yaml's foreach sees only the variant's own fields, not defaults or presets.
        if isinstance(data, dict) and "dataset" not in data:
            raise fail(
                "missing; every variant states its dataset itself (dvc.yaml uses it to pick"
                f" the variant's data files); allowed: {names(DATASETS)}",
                field="dataset",
            )
        return data
