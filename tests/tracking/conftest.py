"""Every test here uses a tmp MLflow store (tracking/isolation.py)."""

from tracking.isolation import empty_store, local_store, no_store_in_checkout  # noqa: F401
