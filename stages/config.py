"""The pydantic models of params.yaml (their errors: stages/validation.py).

Defined on first use (_models): tools.prefork imports stages.params before every stage, where
importing pydantic would cost ~65 ms; the stages run in a fork of a server that has already
imported pydantic (with mlflow), so defining the models there is cheap.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from stages.params import (
    ACTIVATIONS,
    DATASETS,
    LOSSES,
    OPTIMIZERS,
    SCHEDULES,
)
from stages.validation import fail, names

if TYPE_CHECKING:
    from pydantic import BaseModel


@functools.cache
def _models() -> dict[str, type[BaseModel]]:
    """Define the pydantic models of params.yaml.

    Deferred to first use: tools.prefork imports this module before every stage, where
    importing pydantic would cost ~65 ms; the stages themselves run in a fork of a server that
    has already imported pydantic (with mlflow), so defining the models there is cheap.
    """
    from typing import Annotated, Literal

    from pydantic import (
        BaseModel,
        BeforeValidator,
        ConfigDict,
        Discriminator,
        Field,
        NonNegativeFloat,
        NonNegativeInt,
        PositiveFloat,
        PositiveInt,
        Tag,
        ValidationInfo,
        create_model,
        field_validator,
        model_validator,
    )

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

    class Optimizer(Strict):
        """A Keras optimizer (`name`) and its arguments; those left out keep Keras' defaults."""

        name: Literal[OPTIMIZERS]
        learning_rate: NonNegativeFloat = None
        beta_1: NonNegativeFloat = None
        beta_2: NonNegativeFloat = None
        momentum: NonNegativeFloat = None
        weight_decay: NonNegativeFloat = None

    class ExponentialDecay(Strict):
        """keras.optimizers.schedules.ExponentialDecay, replacing the optimizer's learning_rate."""

        name: Literal["exponential_decay"]
        initial_learning_rate: NonNegativeFloat
        decay_steps: PositiveInt
        decay_rate: NonNegativeFloat
        staircase: bool = None

    class CosineDecayRestarts(Strict):
        """keras.optimizers.schedules.CosineDecayRestarts, replacing the learning_rate."""

        name: Literal["cosine_decay_restarts"]
        initial_learning_rate: NonNegativeFloat
        first_decay_steps: PositiveInt
        t_mul: NonNegativeFloat = None
        m_mul: NonNegativeFloat = None
        alpha: NonNegativeFloat = None

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
        patience: PositiveInt = Field(description="EarlyStopping patience (epochs) on val_loss")
        steps_per_execution: PositiveInt

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

    class Mlflow(Strict):
        """MLflow experiment; the SQLite store and artifacts when MLFLOW_TRACKING_URI is unset."""

        experiment: str
        sqlite_file: str
        artifact_dir: str

    class Source(Strict):
        """A dataset's base URLs, and file name -> sha256 of its (decompressed) content."""

        urls: list[str]
        files: dict[str, Annotated[str, Field(pattern="^[0-9a-f]{64}$")]]

    class Fetch(Strict):
        """Where fetch looks: $DATA_MIRRORS, then local_dirs, then each dataset's urls."""

        local_dirs: list[str] = Field(default_factory=list)
        timeout_s: PositiveFloat
        datasets: dict[Literal[DATASETS], Source]

    class PrepareThoracic(Strict):
        """Stratified splits of ThoracicSurgery, z-scored on train statistics if standardize."""

        val_fraction: Fraction
        test_fraction: Fraction
        standardize: bool

    class PrepareFashion(Strict):
        """Validation split of Fashion-MNIST; max_train/max_test subsample (null = all)."""

        val_fraction: Fraction
        validate_on_test: bool
        max_train: PositiveInt | None
        max_test: PositiveInt | None

    class Prepare(Strict):
        """prepare's settings per dataset."""

        thoracic: PrepareThoracic
        fashion_mnist: PrepareFashion

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

    class Runner(Strict):
        """tools.prefork: run stages as forks of a warm server that preloaded these modules."""

        prefork: bool
        idle_timeout_s: PositiveFloat
        start_timeout_s: PositiveFloat
        preload: list[Annotated[str, Field(min_length=1)]]

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
        compare: Compare
        runner: Runner

    return {m.__name__: m for m in (Params, Variant, VariantEntry, VariantPatch, Optimizer)}
