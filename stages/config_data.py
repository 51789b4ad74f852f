"""The pydantic models of params.yaml's data sections: mlflow, fetch and prepare."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    model_validator,
)

from stages.config_base import Fraction, Strict
from stages.params import (
    SOURCES,
)
from stages.validation import fail, names


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
