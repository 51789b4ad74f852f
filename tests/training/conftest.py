"""Every test here uses a tmp MLflow store and backup root (tracking/isolation.py); `variant`
gives the repository's variants, with fields changed."""

from __future__ import annotations

import pytest
from tracking.isolation import empty_store, local_store, no_store_in_checkout  # noqa: F401

from study.config.params import load_params
from study.config.variant import Variant


@pytest.fixture(scope="session")
def study_params():
    return load_params()  # the repository's params.yaml, validated


@pytest.fixture
def variant(study_params):
    """variant(name, **fields): params.yaml's variant `name` with `fields` replaced, validated
    as a Variant (the fields it did not set stay unset, as in a loaded one)."""

    def make(name: str, **fields) -> Variant:
        cfg = study_params.variant(name).model_dump(exclude_unset=True)
        return Variant.model_validate({**cfg, **fields})

    return make
