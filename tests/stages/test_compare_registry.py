"""The compare stage on a copy of the tiny study: the champion is the best of every candidate
(the searched variant too) that beats the softmax regression `baseline` on validation; only a
workspace run moves the aliases; under a DVC experiment (DVC_EXP_NAME in the stage's env, as
`dvc exp run` and the queue's workers set it) the versions are registered, tagged with the
experiment, and no alias moves."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
from conftest import dvc, ran, sh
from inprocess import run_main

import stages.compare
from study.config.paths import METRICS_DIR, MODELS_DIR, REPORTS_DIR
from study.tracking.registry import register

NAME = "keras-regularization-fashion_mnist"


def set_val_accuracy(repo: Path, **figures: float) -> None:
    """metrics/<variant>.json's best_val_accuracy, as if the trainings had scored these."""
    for variant, value in figures.items():
        path = repo / METRICS_DIR / f"{variant}.json"
        path.write_text(json.dumps(json.loads(path.read_text()) | {"best_val_accuracy": value}))


def versions_by_alias(client: mlflow.MlflowClient) -> dict[str, tuple[str, str]]:
    """alias -> (version, variant) of the Fashion-MNIST model."""
    held = client.get_registered_model(NAME).aliases
    return {a: (str(v), client.get_model_version(NAME, v).tags["variant"]) for a, v in held.items()}


def best_model_id(repo: Path, variant: str) -> str:
    return json.loads((repo / MODELS_DIR / variant / "train.json").read_text())["model_ids"]["best"]


def test_only_a_workspace_run_moves_an_alias(study, monkeypatch, capsys):
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{study / 'mlflow.db'}")
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.delenv("DVC_EXP_BASELINE_REV", raising=False)
    # dropout beats baseline, searched does not: champion dropout, no challenger
    set_val_accuracy(study, baseline=0.5, dropout=0.7, searched=0.4)
    run_main(stages.compare, study, monkeypatch)
    report = (study / REPORTS_DIR / "compare.md").read_text()
    assert "| keras-regularization-fashion_mnist | champion | dropout | val accuracy 0.7000 |" in (
        report
    )
    assert "- fashion_mnist: no challenger: no other candidate beats baseline" in report
    before = versions_by_alias(client)
    assert {a: v for a, (_, v) in before.items()} == {"champion": "dropout"}

    # An experiment in which the searched variant wins: registered, tagged, no alias moved.
    set_val_accuracy(study, searched=0.9)
    monkeypatch.setenv("DVC_EXP_NAME", "brisk-cove")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "0123abcd" * 5)
    run_main(stages.compare, study, monkeypatch)
    assert "experiment brisk-cove: no alias moved" in capsys.readouterr().out
    assert versions_by_alias(client) == before
    source = f"models:/{best_model_id(study, 'searched')}"
    (version,) = [v for v in client.search_model_versions(f"name = '{NAME}'") if v.source == source]
    summary = json.loads((study / MODELS_DIR / "searched" / "train.json").read_text())
    assert version.tags == {
        "git_commit": "0123abcd" * 5,
        "git_dirty": version.tags["git_dirty"],
        "dvc_exp_name": "brisk-cove",
        "variant": "searched",
        "dataset": "fashion_mnist",
        "checkpoint": "best",
        "validation_metric": "best_val_accuracy",
        "validation_value": "0.9",
    }
    assert f"runs:/{summary['run_id']}" in version.description

    # The study's own run in the workspace: searched champion, dropout challenger.
    monkeypatch.delenv("DVC_EXP_NAME")
    monkeypatch.delenv("DVC_EXP_BASELINE_REV")
    run_main(stages.compare, study, monkeypatch)
    after = versions_by_alias(client)
    assert after == {
        "champion": (str(version.version), "searched"),
        "challenger": before["champion"],
    }

    # Nothing beats the reference any more: no alias left, and the report says why.
    set_val_accuracy(study, baseline=0.95)
    run_main(stages.compare, study, monkeypatch)
    assert client.get_registered_model(NAME).aliases == {}
    report = (study / REPORTS_DIR / "compare.md").read_text()
    assert (
        "- fashion_mnist: no champion: no candidate beats baseline, the softmax regression"
        " (val accuracy 0.9500) (a higher val accuracy, same rows); best was searched"
        " (val accuracy 0.9000), Δ -0.0500." in report
    )


def test_a_real_dvc_exp_run_moves_no_alias(study):
    """`dvc exp run -S compare.chart_dpi=90` reruns compare as an experiment: an alias a
    consumer relies on stays where the workspace's study put it (here pinned by hand to
    dropout's checkpoint, which compare does not choose in the tiny study: the old compare
    moved it to its own pick), whatever the experiment chooses; its versions, if new, carry
    its name."""
    uri = f"sqlite:///{study / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    mlflow.set_tracking_uri(uri)  # register's mlflow.register_model uses the global store
    try:
        pinned = register(client, NAME, best_model_id(study, "dropout"), {}, "pinned")
    finally:
        mlflow.set_tracking_uri(None)
    client.set_registered_model_alias(NAME, "champion", pinned)
    before = client.get_registered_model(NAME).aliases
    head = sh(study, "git", "rev-parse", "HEAD").strip()
    out = dvc(study, "exp", "run", "-n", "dpi90", "-S", "compare.chart_dpi=90")
    assert ran(out) == ["compare"], out
    assert client.get_registered_model(NAME).aliases == before
    for version in client.search_model_versions(f"name = '{NAME}'"):
        tags = version.tags
        if tags.get("dvc_exp_name"):
            assert tags["dvc_exp_name"] == "dpi90" and tags["git_commit"] == head
