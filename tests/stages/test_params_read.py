"""dvc.yaml's params: a stage lists exactly the params.yaml keys its main() reads, so a param
edit reruns the stages that read it and no other. Each stage's main() runs in-process in a
copy of the tiny study, with every read of a field of params.yaml's models recorded by its
dotted key (Reads, recording). dvc.yaml's code and data deps: test_dvc_yaml."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import study_copy
from pydantic import BaseModel

from study.config.base import Strict
from study.config.params import Params, load_params
from study.config.paths import REPO_ROOT


class Reads:
    """Reads of the fields of one Params object and of the models inside it, by dotted key.

    A variant's merged config (Params.variant) counts as a read of what it was merged from
    once the stage reads one of its fields: a stage that only checks the name exists (and
    trains variants/<name>.json) does not depend on it."""

    def __init__(self, params: Params) -> None:
        self.paths: dict[int, str] = {id(params): ""}
        self.merged: dict[int, set[str]] = {}  # a Variant's id -> the keys it was made from
        self.keys: set[str] = set()
        self.into: set[str] | None = None  # while Params.variant merges: its own reads

    def seen(self, model: BaseModel, name: str, value: Any) -> None:
        keys = self.keys if self.into is None else self.into
        if id(model) in self.merged:
            keys |= self.merged[id(model)]
            return
        path = self.paths.get(id(model))
        if path is None:
            return
        key = f"{path}.{name}" if path else name
        if name.startswith("model_dump"):  # the whole model
            keys.add(path)
        elif name not in type(model).model_fields:
            return
        elif isinstance(value, BaseModel):
            self.paths[id(value)] = key
        elif (
            isinstance(value, dict)
            and value
            and all(isinstance(v, BaseModel) for v in value.values())
        ):  # variants, train.presets: a read is the entry's
            self.paths.update({id(v): f"{key}.{k}" for k, v in value.items()})
        else:
            keys.add(key)


@contextmanager
def recording(monkeypatch, root: Path) -> Iterator[tuple[Any, list[Reads]]]:
    """A load_params for stages, whose Params' field reads are recorded into Reads."""
    reads: list[Reads] = []
    merge = Params.variant

    def getattribute(self: BaseModel, name: str) -> Any:
        value = object.__getattribute__(self, name)
        for r in reads:
            r.seen(self, name, value)
        return value

    def variant(self: Params, name: str) -> Any:
        for r in reads:
            r.into = set()
        try:
            cfg = merge(self, name)
        finally:
            for r in reads:
                r.merged[id(cfg)] = r.merged.get(id(cfg), set()) | r.into
                r.into = None
        return cfg

    def load() -> Params:
        params = load_params(root)
        params._resolved = {}  # load_params resolved every variant: the stage resolves its own
        reads.append(Reads(params))
        return params

    monkeypatch.setattr(Strict, "__getattribute__", getattribute, raising=False)
    monkeypatch.setattr(Params, "variant", variant)
    yield load, reads


def test_reads_are_recorded_by_key_and_a_merged_variant_only_when_used(monkeypatch):
    with recording(monkeypatch, REPO_ROOT) as (load, reads):
        params = load()
        assert params.crossval.folds >= 2
        params.variant("dropout")  # its name checked, its config unused
        assert params.variant("baseline").units > 0  # merged from its entry and defaults
        params.evaluate.model_dump()
    assert reads[0].keys == {"crossval.folds", "variants.baseline", "train.defaults", "evaluate"}


@pytest.fixture(scope="module")
def tiny(built_study, tmp_path_factory) -> Path:
    return study_copy(built_study, tmp_path_factory.mktemp("dvc_yaml") / "repo")


@pytest.fixture
def mlflow_restored():
    """The stages set MLflow's tracking URI and experiment, also in os.environ: put them back."""
    import mlflow
    from mlflow.tracking import fluent

    names = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID")
    saved = {name: os.environ.get(name) for name in names}
    experiment = fluent._active_experiment_id
    yield
    mlflow.set_tracking_uri(saved["MLFLOW_TRACKING_URI"])
    fluent._active_experiment_id = experiment
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


# What a stage's main() reads without it being a dependency (and why).
NOT_DEPENDENCIES = {
    # which crossval stages exist (dvc.yaml's foreach): a variant's results do not change
    # when another one is listed; crossval refuses a variant that is not listed
    "crossval.variants",
    # the study's variant names, for tidy() (which backups nobody will resume: no result of
    # the stage), and compared with the variant's name (a listed variant is never the
    # searched one: load_params refuses a search.variant among the variants)
    "search.variant",
    # result-neutral settings (docs/pipeline.md): TF's thread pools (bit-identical weights with
    # 1 or 2 threads, tests/training/test_fitting.py), how often a training backs up (a
    # resume replays the epochs since, tests/training/test_resume.py) and how often MLflow
    # samples CPU and memory; an edit reruns nothing (test_pipeline_e2e)
    "train.threads",
    "train.backup_every_s",
    "mlflow.system_metrics_s",
    # read only when a new store's experiment is created: an existing one keeps its own
    "mlflow.artifact_dir",
}
# What a stage reads only to refuse a stale config, by stage module: train and crossval
# compare variants/<name>.json with the variant as params.yaml merges it now
# (study.config.params.variant_config), so that a run outside DVC after a params edit fails
# instead of training the old file. Their result comes from the file, a declared dep: DVC
# reruns the variants stage on an edit of these params, then them if their file changed.
# (train_searched likewise reads search.variant_fields, search.dataset and search.base to
# refuse a stale search/best.yaml; it is not among the stages run here.)
READ_TO_REFUSE = {
    "train": ("variants", "train.defaults", "train.presets"),
    "crossval": ("variants", "train.defaults", "train.presets"),
}


def under(key: str, other: str) -> bool:
    """Whether dotted `key` is `other` or inside it."""
    return key == other or key.startswith(other + ".")


@pytest.mark.parametrize(
    ("stage", "args"),
    [
        ("fetch", []),
        ("prepare", []),
        ("variants", []),
        ("train@thoracic_bce", ["thoracic_bce"]),
        ("crossval_thoracic@thoracic_bce", ["thoracic_bce"]),
        ("evaluate@thoracic_bce", ["thoracic_bce"]),
    ],
)
def test_a_stage_lists_exactly_the_params_it_reads(
    stage, args, tiny, monkeypatch, mlflow_restored, capsys
):
    """Each key read is under a declared param (its edit reruns the stage), and each declared
    param is read (its edit reruns nothing needlessly). In the tiny study's copy: the
    declared params as DVC resolves the stage there."""
    from dvc.repo import Repo

    with Repo(str(tiny)) as repo:
        (resolved_stage,) = [s for s in repo.index.stages if s.name == stage]
        declared = [k for d in resolved_stage.deps if hasattr(d, "params") for k in d.params]
    name = stage.split("@")[0].removesuffix("_thoracic")
    module = importlib.import_module(f"stages.{name}")
    monkeypatch.setenv("DVC_ROOT", str(tiny))  # the MLflow store and backups: the copy's
    monkeypatch.delenv("DATA_MIRRORS", raising=False)
    monkeypatch.setattr(sys, "argv", [name, *args])
    monkeypatch.setattr(module, "REPO_ROOT", tiny)
    with recording(monkeypatch, tiny) as (load, reads):
        monkeypatch.setattr(module, "load_params", load)
        module.main()
    capsys.readouterr()
    (record,) = reads
    refused = READ_TO_REFUSE.get(name, ())
    assert all(any(under(k, r) for k in record.keys) for r in refused), "no stale check ran"
    keys = {k for k in record.keys - NOT_DEPENDENCIES if not any(under(k, r) for r in refused)}
    assert keys, "nothing recorded"
    unlisted = sorted(k for k in keys if not any(under(k, d) for d in declared))
    unread = sorted(d for d in declared if not any(under(k, d) or under(d, k) for k in keys))
    assert not unlisted and not unread, {"read, not listed": unlisted, "listed, not read": unread}
