"""Where each stage reads and writes, relative to the repository root (dvc.yaml says the same)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PARAMS_FILE = "params.yaml"
RAW_DIR = Path("data/raw")
PREPARED_DIR = Path("data/prepared")
MODELS_DIR = Path("models")
METRICS_DIR = Path("metrics")
PLOTS_DIR = Path("plots")
REPORTS_DIR = Path("reports")
# Each listed variant's merged config, one JSON file per variant (the variants stage).
VARIANTS_DIR = Path("variants")
# The search stage's best trial as a variant entry: the searched variant (search.variant).
SEARCH_BEST = Path("search/best.yaml")
# Keras BackupAndRestore state; outside DVC outs, which DVC deletes before a stage reruns.
BACKUP_DIR = Path(".backup")
SPLITS = ("train", "val", "test")


def split_path(root: Path, split: str, dataset: str) -> Path:
    """Where one dataset's split lives: <root>/<split>/<dataset>.npz."""
    return root / split / f"{dataset}.npz"


def project_root() -> Path:
    """Where the user's repository lives: DVC_ROOT during `dvc exp run`, else this checkout.

    The MLflow store, the backups and the data mirrors are the user's, also when a stage runs
    in a temporary copy (`dvc exp run --temp/--queue`)."""
    return Path(os.environ.get("DVC_ROOT") or REPO_ROOT).resolve()
