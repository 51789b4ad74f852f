"""study.tracking.registry: the aliases compare sets, on a private store with logged Keras
models: the same results again add no version, another result moves the alias."""

from __future__ import annotations

import keras
import numpy as np

from study.tracking.keras_log import log_checkpoints
from study.tracking.registry import model_name, register


def logged_models(mlflow, tmp_path, n: int) -> list[str]:
    """n tiny Keras models logged by one run as the trainings log theirs; their model ids."""
    x = np.zeros((2, 3), dtype="float32")
    paths = {}
    for i in range(n):
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, name=f"d{i}")])
        paths[f"m{i}"] = tmp_path / f"m{i}.keras"
        model.save(paths[f"m{i}"])
    with mlflow.start_run():
        ids = log_checkpoints(paths, x, {"variant": "v"})
    return [ids[f"m{i}"] for i in range(n)]


def test_aliases_reuse_a_models_version_and_move_to_a_new_result(local_store, tmp_path):
    mlflow, client = local_store, local_store.MlflowClient()
    first, second = logged_models(mlflow, tmp_path, 2)
    name = model_name("exp", "fashion_mnist")
    assert name == "exp-fashion_mnist"
    tags = {"variant": "v", "checkpoint": "best"}

    assert register(client, name, first, "champion", tags) == "1"
    assert register(client, name, second, "challenger", tags) == "2"
    # compare again on the same results: the same versions, no new one
    assert register(client, name, first, "champion", tags) == "1"
    assert register(client, name, second, "challenger", tags) == "2"
    assert len(client.search_model_versions(f"name = '{name}'")) == 2
    # a better variant's checkpoint becomes champion: the alias moves to its existing version
    assert register(client, name, second, "champion", tags) == "2"
    aliases = client.get_registered_model(name).aliases
    assert {k: str(v) for k, v in aliases.items()} == {"champion": "2", "challenger": "2"}
    assert client.get_model_version(name, "1").tags["variant"] == "v"

    loaded = mlflow.keras.load_model(f"models:/{name}@champion")
    by_id = mlflow.keras.load_model(f"models:/{second}")
    assert [w.name for w in loaded.weights] == [w.name for w in by_id.weights]
    assert loaded.layers[0].name == "d1"
