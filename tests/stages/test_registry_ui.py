"""The local MLflow UI shows compare's champion and challenger with their tags. The tiny
study's validation split is too small for any candidate to beat the softmax regression (all
score 1.0: no champion, as the rule says), so the figures are set here as if the trainings
had scored them, and compare runs in process on a copy of the study."""

from __future__ import annotations

import mlflow
import pytest
from inprocess import run_main
from test_compare_registry import NAME, set_val_accuracy, versions_by_alias
from test_team_e2e import mlflow_server, rendered

import stages.compare

pytestmark = pytest.mark.slow


def test_the_local_ui_shows_the_champion_with_its_tags(study, tmp_path, monkeypatch):
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    set_val_accuracy(study, baseline=0.5, dropout=0.7, searched=0.9)
    run_main(stages.compare, study, monkeypatch)
    uri = f"sqlite:///{study / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    held = versions_by_alias(client)
    assert {a: variant for a, (_, variant) in held.items()} == {
        "champion": "searched",
        "challenger": "dropout",
    }
    champion = client.get_model_version(NAME, held["champion"][0])
    assert champion.tags["checkpoint"] == "best" and champion.tags["validation_value"] == "0.9"
    mlflow.set_tracking_uri(uri)
    try:
        assert mlflow.keras.load_model(f"models:/{NAME}@champion").count_params() > 0
    finally:
        mlflow.set_tracking_uri(None)

    store = ["--backend-store-uri", uri, "--artifacts-destination", str(tmp_path / "art")]
    with mlflow_server(*store) as base:
        model_page = rendered(f"{base}/#/models/{NAME}", tmp_path / "profile")
        assert "champion" in model_page and "challenger" in model_page
        url = f"{base}/#/models/{NAME}/versions/{champion.version}"
        version_page = rendered(url, tmp_path / "profile")
    for key in ("git_commit", "variant", "checkpoint", "validation_metric", "validation_value"):
        assert key in version_page, key
    assert champion.tags["git_commit"] in version_page and "best_val_accuracy" in version_page
    assert "runs:/" in version_page  # the description links the training run
