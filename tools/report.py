"""One table across DVC and MLflow: per variant, last vs best, overfitting gap, run id.

  python -m tools.report                 # the workspace
  python -m tools.report --exp a --exp b # DVC experiments (or any git revision)
  python -m tools.report --all-exps      # every experiment of the current commit

Test metrics come from metrics/<v>.json, the gap (train accuracy - val accuracy at the
last and at the best epoch) from plots/history/<v>.csv, time and run id from
models/<v>/train.json; the run's status is looked up in the MLflow store.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pandas as pd
import yaml

from study.config.paths import REPO_ROOT
from study.config.raw import require

Reader = Callable[[str], str]


def variant_row(name: str, read: Reader) -> dict[str, Any]:
    """The comparison row of one variant, from the files the pipeline wrote."""
    metrics = json.loads(read(f"metrics/{name}.json"))
    train = json.loads(read(f"models/{name}/train.json"))
    history = list(csv.DictReader(io.StringIO(read(f"plots/history/{name}.csv"))))

    def gap(epoch: int) -> float:
        row = history[epoch - 1]
        return round(float(row["accuracy"]) - float(row["val_accuracy"]), 4)

    return {
        "variant": name,
        "last_acc": metrics["last"]["accuracy"],
        "best_acc": metrics["best"]["accuracy"],
        "best_epoch": metrics["best_epoch"],
        "epochs_run": metrics["epochs_run"],
        "gap_last": gap(metrics["epochs_run"]),
        "gap_best": gap(metrics["best_epoch"]),
        "train_time_s": train["train_time_s"],
        "mlflow_run_id": train["run_id"],
    }


def report(read: Reader) -> pd.DataFrame:
    """Rows for every variant defined in params.yaml as `read` sees it.

    Names only, not validated: a revision made by older code may not pass today's rules."""
    params = yaml.safe_load(read("params.yaml"))
    return pd.DataFrame([variant_row(name, read) for name in require(params, "variants")])


def add_mlflow_status(frame: pd.DataFrame) -> pd.DataFrame:
    """Each run's status from the tracking store (or 'not found')."""
    from mlflow.exceptions import MlflowException

    from study.config.params import load_params
    from study.tracking.store import setup_mlflow

    mlflow = setup_mlflow(load_params().mlflow)
    client = mlflow.MlflowClient()

    def status(run_id: str) -> str:
        try:
            return client.get_run(run_id).info.status
        except MlflowException:
            return "not found"

    return frame.assign(mlflow_status=frame["mlflow_run_id"].map(status))


def experiment_names() -> list[str]:
    out = subprocess.run(
        [sys.executable, "-m", "dvc", "exp", "list", "--names-only"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--exp", action="append", default=[], help="experiment or git rev")
    parser.add_argument("--all-exps", action="store_true", help="every experiment of HEAD")
    args = parser.parse_args()
    revs = args.exp + (experiment_names() if args.all_exps else [])
    if not revs:
        frames = [report(lambda p: (REPO_ROOT / p).read_text()).assign(exp="workspace")]
    else:
        import dvc.api

        frames = [
            report(lambda p, rev=rev: dvc.api.read(p, repo=str(REPO_ROOT), rev=rev)).assign(exp=rev)
            for rev in revs
        ]
    frame = add_mlflow_status(pd.concat(frames, ignore_index=True))
    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(frame.to_string(index=False))


if __name__ == "__main__":
    main()
