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
    N_CLASSES,
    OPTIMIZERS,
    SCHEDULES,
    SOURCES,
)
from stages.validation import fail, names

if TYPE_CHECKING:
    from pydantic import BaseModel

# search.space keys: the variant fields a trial may vary, and optimizer settings by their own
# name (learning_rate: optimizer.learning_rate). Forms of a searched field's distribution.
SEARCH_OPTIMIZER_KEYS = ("learning_rate", "beta_1", "beta_2", "momentum", "weight_decay")
SEARCH_KEYS = (
    *("depth", "units", "activation", "dropout", "kernel_l2", "activity_l1", "max_norm"),
    *("batch_size", *SEARCH_OPTIMIZER_KEYS),
)
SEARCH_FORMS = ("choice", "uniform", "loguniform", "randint")


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

    def class_weight_form(value: Any) -> Any:
        # One error naming every form, instead of pydantic's one per member of the union.
        if value is not None and value != "balanced" and not isinstance(value, dict):
            allowed = "balanced, null, a mapping class -> weight"
            raise fail(f"unknown value {value!r}; allowed: {allowed}")
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
        patience: PositiveInt = Field(description="EarlyStopping patience (epochs) on val_loss")
        steps_per_execution: PositiveInt
        class_weight: ClassWeight = None  # None: every example weighs 1

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
        datasets: dict[Literal[SOURCES], Source]

    class ThoracicFeatures(Strict):
        """Feature columns of the CSV (0-based): dropped, one-hot encoded (the categories of the
        train rows), and the other columns z-scored on train statistics if standardize."""

        drop_columns: list[NonNegativeInt] = Field(default_factory=list)
        one_hot_columns: list[NonNegativeInt] = Field(default_factory=list)
        standardize: bool

        @model_validator(mode="after")
        def _each_column_once(self) -> Any:
            for field in ("drop_columns", "one_hot_columns"):
                columns = getattr(self, field)
                if len(set(columns)) < len(columns):
                    raise fail(f"a column is listed twice: {columns}", field=field)
            both = set(self.drop_columns) & set(self.one_hot_columns)
            if both:
                raise fail(f"column(s) {names(both)} also in drop_columns", field="one_hot_columns")
            return self

    class PrepareThoracic(ThoracicFeatures):
        """Stratified splits of ThoracicSurgery (also thoracic_clean's rows), and its features."""

        val_fraction: Fraction
        test_fraction: Fraction

    class PrepareThoracicClean(ThoracicFeatures):
        """thoracic_clean: the rows of prepare.thoracic's splits, with these features."""

    class PrepareFashion(Strict):
        """Validation split of Fashion-MNIST; max_train/max_test subsample (null = all)."""

        val_fraction: Fraction
        validate_on_test: bool
        max_train: PositiveInt | None
        max_test: PositiveInt | None

    class Prepare(Strict):
        """prepare's settings per dataset."""

        thoracic: PrepareThoracic
        thoracic_clean: PrepareThoracicClean
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
        """stages/search.py: Ray Tune (ASHA + seeded Optuna TPE) on the train and val splits of
        `dataset`; the best trial becomes variant `variant` (search/best.yaml)."""

        variant: str = Field(description="the searched variant's name; not a key of variants")
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

        @model_validator(mode="after")
        def _grace_within_epochs(self) -> Any:
            if self.grace_period > self.max_epochs:
                raise fail(
                    f"{self.grace_period} > max_epochs {self.max_epochs}", field="grace_period"
                )
            return self

    class Parallel(Strict):
        """tools.ray_repro: the DVC graph's stale stages as Ray tasks."""

        num_cpus: PositiveInt | None  # of the local Ray instance; null = every core
        cpus_per_stage: PositiveFloat
        stage_cpus: dict[str, NonNegativeFloat]  # stage name -> CPUs, instead of cpus_per_stage
        ray_driver_stages: list[str]  # stages that run Ray tasks of their own (search)
        max_retries: NonNegativeInt
        stop_timeout_s: PositiveFloat
        commit_interval_s: PositiveFloat

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
        compare: Compare
        search: Search
        runner: Runner

    return {
        m.__name__: m for m in (Params, Variant, VariantEntry, VariantPatch, Optimizer, Parallel)
    }
