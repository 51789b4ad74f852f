"""prepare's settings as params.yaml spells them, validated (study.config.sections): shared by
test_prepare and test_prepare_output."""

from __future__ import annotations

from study.config.sections import Prepare, PrepareFashion, PrepareThoracic, PrepareThoracicClean
from study.config.validation import validate

RAW_FEATURES = {"drop_columns": [], "one_hot_columns": []}
THORACIC = {"val_fraction": 0.15, "test_fraction": 0.15, "standardize": True, **RAW_FEATURES}
CLEAN = {"drop_columns": [0], "one_hot_columns": [1], "standardize": True}
FASHION = {"val_fraction": 0.1, "validate_on_test": False, "max_train": None, "max_test": None}


def thoracic_cfg(**fields) -> PrepareThoracic:
    return validate(PrepareThoracic, {**THORACIC, **fields}, "prepare.thoracic")


def clean_cfg(**fields) -> PrepareThoracicClean:
    return validate(PrepareThoracicClean, {**CLEAN, **fields}, "prepare.thoracic_clean")


def fashion_cfg(**fields) -> PrepareFashion:
    return validate(PrepareFashion, {**FASHION, **fields}, "prepare.fashion_mnist")


def prepare_cfg(thoracic: dict | None = None, clean: dict | None = None) -> Prepare:
    """prepare's settings with these changes to the thoracic ones."""
    raw = {
        "thoracic": {**THORACIC, **(thoracic or {})},
        "thoracic_clean": {**CLEAN, **(clean or {})},
        "fashion_mnist": FASHION,
    }
    return validate(Prepare, raw, "prepare")
