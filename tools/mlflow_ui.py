"""`make mlflow-ui`: MLflow's UI on the pipeline's store, opened on the training runs.

  python -m tools.mlflow_ui [PORT]

MLflow 3.17's UI shows an experiment in its GenAI view (overview, traces) unless the
"Model training" view is chosen; the experiment's `mlflow.experimentKind` tag is not
consulted while that switch exists. The printed link chooses it (`workflowType`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from study.config.cli import run_stage
from study.config.params import load_params

HOST = "127.0.0.1"  # local only; expose a tracking server deliberately (README: Team use)
DEFAULT_PORT = "5000"


def ui_url(base: str, experiment_id: str, tab: str = "") -> str:
    """The UI page of an experiment (tab: "" for its runs, "models" for logged models)."""
    path = f"/{tab}" if tab else ""
    return f"{base}/#/experiments/{experiment_id}{path}?workflowType=machine_learning"


def main() -> None:
    port = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_PORT
    params = load_params()
    from study.tracking.store import setup_mlflow, tracking_uri

    mlflow = setup_mlflow(params.mlflow)
    experiment = mlflow.get_experiment_by_name(params.mlflow.experiment)
    uri = tracking_uri(params.mlflow)
    server = uri.startswith(("http://", "https://"))  # a tracking server serves its own UI
    base = uri.rstrip("/") if server else f"http://{HOST}:{port}"
    print(f"runs:   {ui_url(base, experiment.experiment_id)}")
    print(f"models: {ui_url(base, experiment.experiment_id, 'models')}", flush=True)
    if server:
        return
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    # MLflow's server jobs (GenAI scorers, trace roll-ups) are not used here; on, each start
    # adds a job runner and two Huey consumer processes.
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    os.execv(
        mlflow_bin, [mlflow_bin, "ui", "--host", HOST, "--port", port, "--backend-store-uri", uri]
    )


if __name__ == "__main__":
    run_stage(main)
