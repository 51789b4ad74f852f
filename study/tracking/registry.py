"""Registered models and their aliases: per dataset, model <experiment>-<dataset> holds a
version per chosen checkpoint, tagged with where it came from; `champion` and `challenger`
(study.reports.champions) point at versions, and
`mlflow.keras.load_model("models:/<name>@champion")` loads one. Only a run of the study in
the workspace moves an alias: under `dvc exp run` (queued or not) compare registers versions
tagged with the experiment's name and leaves the aliases where they are."""

from __future__ import annotations

import os
from typing import Any

ALIASES = ("champion", "challenger")


def model_name(experiment: str, dataset: str) -> str:
    """The registered model of a dataset's study: <experiment>-<dataset>."""
    return f"{experiment}-{dataset}"


def experiment_name() -> str | None:
    """The DVC experiment this stage runs in (DVC_EXP_NAME, which `dvc exp run` and the
    queue's workers set in a stage's environment), None in a workspace run."""
    return os.environ.get("DVC_EXP_NAME") or None


def register(client: Any, name: str, model_id: str, tags: dict[str, str], description: str) -> str:
    """The version of registered model `name` for logged model `model_id`, registered with
    `tags` and `description` when new (the same results again add no version: the first
    registration's tags say where it came from); the version's number."""
    import mlflow

    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name)
    source = f"models:/{model_id}"  # what register_model records (the store may lack model_id)
    found = [v for v in client.search_model_versions(f"name = '{name}'") if v.source == source]
    if found:
        return str(found[0].version)
    version = str(mlflow.register_model(source, name, tags=tags).version)
    client.update_model_version(name, version, description=description)
    return version


def point_aliases(client: Any, name: str, versions: dict[str, str]) -> None:
    """Point each alias of `versions` at its version and take the other ALIASES off model
    `name` (if it exists): an alias the study no longer earns (no candidate beats the
    reference) must not keep pointing at an older choice."""
    exists = client.search_registered_models(f"name = '{name}'")
    held = set(client.get_registered_model(name).aliases) if exists else set()
    for alias in ALIASES:
        if alias in versions:
            client.set_registered_model_alias(name, alias, versions[alias])
        elif alias in held:
            client.delete_registered_model_alias(name, alias)


def run_link(client: Any, run_id: str) -> str:
    """A training run as a version's description names it: runs:/<id> and its UI path."""
    experiment = client.get_run(run_id).info.experiment_id
    return f"runs:/{run_id} (UI: #/experiments/{experiment}/runs/{run_id})"


def register_chosen(
    client: Any,
    name: str,
    rows: list[dict[str, Any]],
    trained: dict[str, dict[str, Any]],
    provenance: dict[str, str],
) -> dict[str, str]:
    """Register the best checkpoint of each chosen row's variant (rows: alias, variant,
    dataset, criterion, value; trained: the trainings' summaries, models/<variant>/train.json)
    as a version of `name`, tagged with `provenance` (git commit, DVC experiment), the
    variant, the checkpoint and its validation figure, its description linking the training
    run; then, in a workspace run only, point the aliases at them. alias -> version."""
    versions = {}
    for row in rows:
        summary = trained[row["variant"]]
        tags = {**provenance, "variant": row["variant"], "dataset": row["dataset"]}
        tags |= {"checkpoint": "best", "validation_metric": row["criterion"]}
        tags["validation_value"] = str(row["value"])
        about = f"Best checkpoint of {row['variant']}; training run "
        about += run_link(client, summary["run_id"])
        versions[row["alias"]] = register(client, name, summary["model_ids"]["best"], tags, about)
    if experiment_name() is None:
        point_aliases(client, name, versions)
    return versions


def describe_aliases(client: Any, name: str, versions: dict[str, str]) -> str:
    """One line on what compare did to model `name`: versions registered, aliases moved."""
    chosen = ", ".join(f"{a} = version {v}" for a, v in versions.items()) or "no version chosen"
    experiment = experiment_name()
    if experiment:
        return f"{chosen}; experiment {experiment}: no alias moved"
    exists = client.search_registered_models(f"name = '{name}'")
    held = client.get_registered_model(name).aliases if exists else {}
    return f"{chosen}; aliases now {dict(sorted(held.items())) or 'none'}"
