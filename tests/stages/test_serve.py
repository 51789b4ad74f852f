"""`mlflow models serve` of the registered champion (README's command) on the tiny study:
it answers a JSON request of raw test rows (uint8 images) with the predictions evaluate
computed for those rows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest
from servers import MLFLOW, free_port

from bench.workspace import pipeline_env
from study.config.paths import MODELS_DIR, PLOTS_DIR, PREPARED_DIR, split_path
from study.io.splits import load_raw_x

pytestmark = pytest.mark.slow
NAME = "keras-regularization-fashion_mnist"
CHAMPION = f"models:/{NAME}@champion"


def wait_until_up(proc: subprocess.Popen, url: str, log: Path, timeout_s: float = 180) -> None:
    """Until `url` answers 200 (the scoring server's /ping), or fail with the server's log."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(1)
    raise AssertionError(f"`mlflow models serve` did not come up:\n{log.read_text()[-3000:]}")


def test_the_served_champion_answers_raw_rows_with_evaluates_predictions(study):
    uri = f"sqlite:///{study / 'mlflow.db'}"
    variant = "dropout"
    trained = json.loads((study / MODELS_DIR / variant / "train.json").read_text())
    mlflow.set_tracking_uri(uri)
    try:  # the champion as compare points it (the tiny study's own may have none)
        version = mlflow.register_model(f"models:/{trained['model_ids']['best']}", NAME).version
        mlflow.MlflowClient().set_registered_model_alias(NAME, "champion", version)
        (tensor,) = mlflow.models.get_model_info(CHAMPION).signature.inputs.inputs
    finally:
        mlflow.set_tracking_uri(None)
    assert (tensor.type, tensor.shape) == (np.dtype("uint8"), (-1, 28, 28))  # raw images
    raw = load_raw_x(split_path(study / PREPARED_DIR, "test", "fashion_mnist"))[:25]
    lines = (study / PLOTS_DIR / "confusion" / f"{variant}.csv").read_text().splitlines()
    evaluated = np.array([int(line.split(",")[1]) for line in lines[1 : 1 + len(raw)]])
    best = keras.saving.load_model(study / MODELS_DIR / variant / "best.keras", safe_mode=True)
    probs = best.predict(raw, verbose=0)  # what evaluate's scores come from

    port, log = free_port(), study / "serve.log"  # a file: a pipe could fill and block it
    proc = subprocess.Popen(
        [MLFLOW, "models", "serve", "-m", CHAMPION, "--env-manager", "local",
         "--host", "127.0.0.1", "--port", str(port)],
        cwd=study, env=pipeline_env(MLFLOW_TRACKING_URI=uri), stdout=log.open("w"),
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        wait_until_up(proc, f"http://127.0.0.1:{port}/ping", log)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps({"inputs": raw.tolist()}).encode(),  # JSON ints, as curl sends
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            served = np.array(json.load(response)["predictions"])
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the CLI and its server
        proc.wait(timeout=30)
    assert served.shape == (len(raw), 10)
    np.testing.assert_array_equal(served.argmax(axis=1), evaluated)
    np.testing.assert_allclose(served, probs, atol=1e-6)
