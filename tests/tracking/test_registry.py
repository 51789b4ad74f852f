"""study.tracking.registry: the versions and aliases compare sets, on a private store with
logged Keras models: the same results again add no version, another result moves the alias,
an alias no longer earned is taken off, and under a DVC experiment no alias moves."""

from __future__ import annotations

import keras
import numpy as np

from study.tracking.keras_log import log_checkpoints
from study.tracking.registry import model_name, point_aliases, register, register_chosen


def logged_models(mlflow, tmp_path, n: int) -> tuple[str, list[str]]:
    """n tiny Keras models logged by one run as the trainings log theirs: (run id, model ids)."""
    x = np.zeros((2, 3), dtype="float32")
    paths = {}
    for i in range(n):
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, name=f"d{i}")])
        paths[f"m{i}"] = tmp_path / f"m{i}.keras"
        model.save(paths[f"m{i}"])
    with mlflow.start_run() as run:
        ids = log_checkpoints(paths, x, {"variant": "v"})
    return run.info.run_id, [ids[f"m{i}"] for i in range(n)]


def aliases(client, name: str) -> dict[str, str]:
    return {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}


def test_aliases_reuse_a_models_version_and_move_to_a_new_result(local_store, tmp_path):
    mlflow, client = local_store, local_store.MlflowClient()
    _, (first, second) = logged_models(mlflow, tmp_path, 2)
    name = model_name("exp", "fashion_mnist")
    assert name == "exp-fashion_mnist"
    tags = {"variant": "v", "checkpoint": "best"}

    assert register(client, name, first, tags, "one") == "1"
    assert register(client, name, second, tags, "two") == "2"
    point_aliases(client, name, {"champion": "1", "challenger": "2"})
    # compare again on the same results: the same versions, no new one
    assert register(client, name, first, tags, "one") == "1"
    assert len(client.search_model_versions(f"name = '{name}'")) == 2
    # a better variant's checkpoint becomes champion, and no challenger beats the reference
    # any more: the champion moves, the challenger alias is taken off
    point_aliases(client, name, {"champion": "2"})
    assert aliases(client, name) == {"champion": "2"}
    assert client.get_model_version(name, "1").tags["variant"] == "v"
    assert client.get_model_version(name, "1").description == "one"
    # no candidate beats the reference: no alias left for a consumer to load
    point_aliases(client, name, {})
    assert aliases(client, name) == {}
    point_aliases(client, "exp-never-registered", {})  # no model: nothing to take off

    point_aliases(client, name, {"champion": "2"})
    loaded = mlflow.keras.load_model(f"models:/{name}@champion")
    by_id = mlflow.keras.load_model(f"models:/{second}")
    assert [w.name for w in loaded.weights] == [w.name for w in by_id.weights]
    assert loaded.layers[0].name == "d1"


def rows(*variants: str) -> list[dict]:
    """choose's rows for champion (and challenger) of variants."""
    return [
        {"alias": alias, "dataset": "fashion_mnist", "variant": v, "criterion": "best_val_accuracy"}
        | {"value": 0.9 - i / 10, "diff": 0.1, "p": None}
        for i, (alias, v) in enumerate(zip(("champion", "challenger"), variants, strict=False))
    ]


def test_an_experiment_registers_tagged_versions_and_moves_no_alias(
    local_store, tmp_path, monkeypatch
):
    """A workspace run points the aliases; then a run under `dvc exp run` (DVC_EXP_NAME in
    the stage's env) registers its versions tagged with the experiment and moves none.
    Every version carries the commit, experiment, variant, checkpoint, validation figure
    and a link to its training run."""
    mlflow, client = local_store, local_store.MlflowClient()
    run_id, (a, b, c) = logged_models(mlflow, tmp_path, 3)
    trained = {
        v: {"run_id": run_id, "model_ids": {"best": m}}
        for v, m in zip("abc", (a, b, c), strict=True)
    }
    name = "exp-fashion_mnist"
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    workspace = {"git_commit": "abc123", "git_dirty": "false"}
    assert register_chosen(client, name, rows("a", "b"), trained, workspace) == {
        "champion": "1",
        "challenger": "2",
    }
    assert aliases(client, name) == {"champion": "1", "challenger": "2"}

    monkeypatch.setenv("DVC_EXP_NAME", "brisk-cove")
    provenance = {**workspace, "git_commit": "def456", "dvc_exp_name": "brisk-cove"}
    assert register_chosen(client, name, rows("c"), trained, provenance) == {"champion": "3"}
    assert aliases(client, name) == {"champion": "1", "challenger": "2"}  # untouched
    version = client.get_model_version(name, "3")
    assert version.tags == {
        "git_commit": "def456",
        "git_dirty": "false",
        "dvc_exp_name": "brisk-cove",
        "variant": "c",
        "dataset": "fashion_mnist",
        "checkpoint": "best",
        "validation_metric": "best_val_accuracy",
        "validation_value": "0.9",
    }
    experiment = client.get_run(run_id).info.experiment_id
    assert version.description == (
        f"Best checkpoint of c; training run runs:/{run_id}"
        f" (UI: #/experiments/{experiment}/runs/{run_id})"
    )
    assert client.get_model_version(name, "1").tags["git_commit"] == "abc123"
    assert "dvc_exp_name" not in client.get_model_version(name, "1").tags
