"""The team's tracking server as docs/team.md runs it: MLflow's basic-auth app, its runs and
users in PostgreSQL (a throwaway cluster, tests/servers.py), artifacts in a shared directory;
on 127.0.0.1 here. Requests without valid credentials are refused; a training and its
evaluation log with a teammate's (MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD), their
models' files proxied by the server, and their results are the study's bit for bit."""

from __future__ import annotations

import base64
import re
import secrets
import sys
import urllib.error
import urllib.request

import mlflow
import psycopg
import pytest
from conftest import sh
from mlflow.server import get_app_client
from servers import mlflow_server, postgres

from bench.workspace import pipeline_env
from study.config.paths import REPO_ROOT

pytestmark = pytest.mark.slow
EXPERIMENT = "keras-regularization"
SEARCH = "/api/2.0/mlflow/experiments/search?max_results=1"
# train and evaluate of one variant in one plain process: no DVC, no warm stage server.
TRAIN_AND_EVALUATE = """
import sys
from stages import evaluate, train
sys.argv = ["stage", sys.argv[1]]
train.main()
evaluate.main()
"""


def status(url: str, user: str | None = None, password: str = "") -> int:
    request = urllib.request.Request(url)
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def auth_config(path, database_uri: str) -> None:
    """docs/team.md's basic_auth.ini, its database_uri this cluster's: teammates may log into
    each other's experiments (EDIT), only their owner or the admin deletes or manages one; a
    checked password is cached for a minute (a password changed through the API at once)."""
    doc = (REPO_ROOT / "docs" / "team.md").read_text()
    ini = doc.split("cat > ~/mlflow/basic_auth.ini <<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0]
    ini = re.sub(r"(?m)^database_uri = .*$", f"database_uri = {database_uri}", ini)
    assert "auth_cache_ttl_seconds = 60" in ini and database_uri in ini, ini
    path.write_text(ini + "\n")


def test_an_authenticated_server_on_postgresql_refuses_anonymous_requests_and_logs_a_training(
    study, built_study, tmp_path, monkeypatch
):
    first, admin_pw = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    alice, bob = ("alice", secrets.token_urlsafe(12)), ("bob", secrets.token_urlsafe(12))
    with postgres("mlflow", "mlflow_auth") as db:
        auth_config(tmp_path / "basic_auth.ini", f"{db}/mlflow_auth")
        server_env = {
            "MLFLOW_AUTH_CONFIG_PATH": str(tmp_path / "basic_auth.ini"),
            "MLFLOW_AUTH_ADMIN_PASSWORD": first,  # creates the admin at the first start only
            "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
        }
        store = ["--backend-store-uri", f"{db}/mlflow",
                 "--artifacts-destination", str(tmp_path / "artifacts")]  # fmt: skip
        with mlflow_server("--app-name", "basic-auth", *store, env=server_env) as uri:
            assert status(uri + SEARCH) == 401
            assert status(uri + SEARCH, "admin", "wrong") == 401
            assert status(uri + "/health") == 200  # what the stages probe before training

            # The admin changes its first password and adds a user per teammate.
            monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
            monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", first)
            users = get_app_client("basic-auth", tracking_uri=uri)
            users.update_user_password("admin", admin_pw, current_password=first)
            assert status(uri + SEARCH, "admin", first) == 401
            monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", admin_pw)
            for name, password in (alice, bob):
                users.create_user(name, password)
            assert status(uri + SEARCH, *alice) == 200

            env = pipeline_env(
                DATA_MIRRORS="", MLFLOW_TRACKING_URI=uri,
                MLFLOW_TRACKING_USERNAME=alice[0], MLFLOW_TRACKING_PASSWORD=alice[1],
            )  # fmt: skip
            sh(study, sys.executable, "-c", TRAIN_AND_EVALUATE, "baseline", env=env)

            # bob reads alice's runs and logs into her experiment; deleting it is hers.
            monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", bob[0])
            monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", bob[1])
            client = mlflow.MlflowClient(tracking_uri=uri)
            exp = client.get_experiment_by_name(EXPERIMENT)
            models = client.search_logged_models([exp.experiment_id])
            (run,) = runs_named(client, exp.experiment_id, "baseline")
            assert run.info.status == "FINISHED" and "val_loss" in run.data.metrics
            assert run.info.user_id == "alice"
            (evaluation,) = runs_named(client, exp.experiment_id, "baseline/best")
            assert {"test_loss", "test_accuracy"} <= set(evaluation.data.metrics)
            assert evaluation.data.tags["mlflow.parentRunId"] == run.info.run_id
            own = {m.name: m for m in models if m.source_run_id == run.info.run_id}
            assert set(own) == {"best", "last"}
            assert own["best"].artifact_location.startswith("mlflow-artifacts:")  # proxied
            mlflow.set_tracking_uri(uri)
            try:
                model = mlflow.keras.load_model(f"models:/{own['best'].model_id}")
            finally:
                mlflow.set_tracking_uri(None)
            assert model.count_params() > 0
            client.set_terminated(client.create_run(exp.experiment_id).info.run_id)
            with pytest.raises(mlflow.MlflowException, match="403"):
                client.delete_experiment(exp.experiment_id)
            logged = len(client.search_runs([exp.experiment_id]))

        # The runs are in PostgreSQL, the models' files in the shared artifact directory.
        with psycopg.connect(f"{db}/mlflow") as conn:
            rows = conn.execute("SELECT name, user_id, status FROM runs").fetchall()
        assert ("baseline", "alice", "FINISHED") in rows and len(rows) == logged
        assert list((tmp_path / "artifacts").glob(f"{exp.experiment_id}/models/*/artifacts/*"))

    # Retrained by hand in a plain process, logging to the server: the metrics and the
    # curve the study's forked stage run wrote, bit for bit.
    for path in ("metrics/baseline.json", "plots/history/baseline.csv"):
        assert (study / path).read_bytes() == (built_study / path).read_bytes(), path


def runs_named(client: mlflow.MlflowClient, experiment_id: str, name: str) -> list:
    return client.search_runs([experiment_id], f"attributes.run_name = '{name}'")
