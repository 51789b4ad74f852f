"""Registered models and their aliases: per dataset, the study's best variant (chosen on
validation figures) is version `champion` of model <experiment>-<dataset>, the searched
variant `challenger`; `mlflow.keras.load_model("models:/<name>@champion")` loads it."""

from __future__ import annotations

from typing import Any

ALIASES = ("champion", "challenger")


def model_name(experiment: str, dataset: str) -> str:
    """The registered model of a dataset's study: <experiment>-<dataset>."""
    return f"{experiment}-{dataset}"


def register(client: Any, name: str, model_id: str, alias: str, tags: dict[str, str]) -> str:
    """Point `alias` of registered model `name` at the version of logged model `model_id`,
    creating the model and the version only when new (the same results again add no
    version); the version's number."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    source = f"models:/{model_id}"  # what register_model records (the store may lack model_id)
    found = [v for v in client.search_model_versions(f"name = '{name}'") if v.source == source]
    version = found[0].version if found else mlflow.register_model(source, name, tags=tags).version
    client.set_registered_model_alias(name, alias, version)
    return str(version)
