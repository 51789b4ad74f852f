"""The prepared split files as MLflow datasets: a run's Datasets panel names each file by its
DVC path, with DVC's md5 of it as the digest (the md5 dvc.lock records for prepare's output),
so a run is tied to the dvc.lock, and the data, it was made from."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from study.config.paths import REPO_ROOT
from study.io.files import file_md5

# Contexts of a split file, as the runs use them (MLflow's mlflow.data.context input tag).
CONTEXTS = {"train": "training", "val": "validation", "test": "evaluation"}


def split_dataset(path: Path, data: tuple[np.ndarray, np.ndarray], root: Path = REPO_ROOT) -> Any:
    """An MLflow dataset for a prepared split file data/prepared/<split>/<dataset>.npz and its
    arrays: named <dataset>/<split>, sourced at the DVC path, digested by DVC's md5."""
    import mlflow

    try:
        source = str(path.resolve().relative_to(root.resolve()))
    except ValueError:  # not under the repository (a test's files): the path as given
        source = str(path)
    with warnings.catch_warnings():
        # Two of MLflow's local-file source types accept a path; either one is right here.
        warnings.filterwarnings("ignore", "The specified dataset source can be interpreted")
        return mlflow.data.from_numpy(
            data[0],
            targets=data[1],
            source=source,
            name=f"{path.stem}/{path.parent.name}",
            digest=file_md5(path),
        )


def split_inputs(splits: list[tuple[Path, tuple[np.ndarray, np.ndarray]]]) -> list[Any]:
    """The run inputs of split files (path, arrays), each in its split's context, for
    MlflowClient.log_inputs: small entities (no arrays), so the search's driver can ship
    them to its trials."""
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    return [
        DatasetInput(
            split_dataset(path, data)._to_mlflow_entity(),
            [InputTag(MLFLOW_DATASET_CONTEXT, CONTEXTS[path.parent.name])],
        )
        for path, data in splits
    ]
