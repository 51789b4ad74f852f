"""The pydantic models of params.yaml's sections but `variants` and `search` (variant.py,
search.py); `Params` (params.py) puts them together."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from study.config.base import ClassWeight, Fraction, Strict, one_weight_per_class
from study.config.validation import fail, names
from study.config.variant import BINARY, VariantPatch

SOURCES = ("thoracic", "fashion_mnist")  # the datasets fetch downloads (data/raw/<source>)


class Mlflow(Strict):
    """MLflow experiment; the SQLite store and artifacts when MLFLOW_TRACKING_URI is unset."""

    experiment: str
    sqlite_file: str
    artifact_dir: str
    # MLflow's system metrics (CPU, memory, disk, network) in each training run, sampled this
    # often; None: off.
    system_metrics_s: PositiveFloat | None


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

    @model_validator(mode="after")
    def _leaves_training_rows(self) -> Any:
        if self.val_fraction + self.test_fraction >= 1:
            total = self.val_fraction + self.test_fraction
            raise fail(f"val_fraction + test_fraction must be < 1, got {total:g}")
        return self


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
    """TF threads (0 = TF default), seconds between backups, XLA-compiled steps, the defaults
    of every variant, and named presets."""

    threads: NonNegativeInt
    # result-neutral: when a training backs up (study.training.resume.TimedBackup)
    backup_every_s: NonNegativeFloat
    # Keras' model.compile(jit_compile=...) for every training (train, search trials, folds):
    # other weights than without (docs/reproducibility.md), so a dependency of those stages.
    jit_compile: bool
    defaults: VariantPatch
    presets: dict[str, VariantPatch]


class Diagnostics(Strict):
    """Dead and saturated units and the first layer's gradient norm, on test rows."""

    saturation: Fraction
    batch_size: PositiveInt


class Evaluate(Strict):
    """Test-split evaluation: inference batch size and the binary decision threshold."""

    batch_size: PositiveInt
    threshold: Annotated[float, Field(ge=0, le=1)]
    diagnostics: Diagnostics


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
    """Repeated stratified k-fold on the non-test rows (train + val files): each listed
    variant refitted per fold, beside the logistic reference and the majority class."""

    folds: Annotated[int, Field(ge=2)]
    repeats: PositiveInt
    logistic: Logistic
    # dvc.yaml has one crossval stage per binary dataset, over its list: every key is needed.
    variants: dict[Literal[BINARY], list[str]] = Field(
        description="the cross-validated variants, under their dataset's name"
    )

    @field_validator("variants")
    @classmethod
    def _every_dataset(cls, variants: dict[str, list[str]]) -> dict[str, list[str]]:
        missing = sorted(set(BINARY) - set(variants))
        if missing:
            raise fail(f"missing {names(missing)} (an empty list [] for none)")
        for dataset, listed in variants.items():
            if len(set(listed)) < len(listed):
                raise fail(f"a variant is listed twice: {listed}", field=dataset)
        return variants


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
