"""compare.md: one table per dataset of every variant's last vs best test metrics, then the
activation diagnostics, the cross-validation and the noise across seeds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from study.io.files import write_atomic
from study.reports.crossval import CV_COLUMNS, crossval_markdown, cv_fields
from study.reports.seeds import SEED_COLUMNS, seed_fields, seeds_markdown

COLUMNS = [
    "variant",
    "dataset",
    "last_accuracy",
    "best_accuracy",
    "gain_best_vs_last",
    "last_loss",
    "best_loss",
    "best_epoch",
    "epochs_run",
    "train_time_s",
]
# Activation diagnostics (evaluate.diagnostics), shown in their own table.
DIAGNOSTICS = ("dead_fraction", "saturated_fraction", "first_layer_grad_norm")
# reports/compare.csv, the data of dvc.yaml's last_vs_best plot: one row per variant with last
# and best side by side, so the plot's y lists both fields and DVC keeps them apart.
PLOT_COLUMNS = ["variant", "last_accuracy", "best_accuracy"]


def read_metrics(variants: list[str], metrics_dir: Path) -> dict[str, dict[str, Any]]:
    """metrics/<variant>.json of each variant (the evaluate stages')."""
    return {name: json.loads((metrics_dir / f"{name}.json").read_text()) for name in variants}


def collect(
    metrics: dict[str, dict[str, Any]],
    crossval: dict[str, dict[str, Any]],
    seconds: dict[str, float],
) -> pd.DataFrame:
    """One row per variant from its metrics, its training's seconds and, if cross-validated,
    its crossval scores."""
    rows = []
    for name, m in metrics.items():
        row: dict[str, Any] = {
            "variant": name,
            "dataset": m["dataset"],
            "last_accuracy": m["last"]["accuracy"],
            "best_accuracy": m["best"]["accuracy"],
            "gain_best_vs_last": round(m["best"]["accuracy"] - m["last"]["accuracy"], 6),
            # A diverged checkpoint (NaN outputs) has no loss: the table says so.
            "last_loss": "diverged" if m["last"].get("diverged") else m["last"]["loss"],
            "best_loss": "diverged" if m["best"].get("diverged") else m["best"]["loss"],
            "best_epoch": m["best_epoch"],
            "epochs_run": m["epochs_run"],
            "train_time_s": seconds[name],
        }
        for extra in ("penalty", "auc", "balanced_accuracy", *DIAGNOSTICS):
            if extra in m["last"]:
                row[f"last_{extra}"] = m["last"][extra]
                row[f"best_{extra}"] = m["best"][extra]
        if "majority_accuracy" in m:
            row["majority_accuracy"] = m["majority_accuracy"]
        rows.append(row | cv_fields(crossval.get(name)) | seed_fields(m))
    frame = pd.DataFrame(rows)
    extras = [c for c in frame.columns if c not in COLUMNS]
    return frame[COLUMNS + extras]


def to_markdown(frame: pd.DataFrame, references: dict[str, dict[str, Any]] | None = None) -> str:
    """GitHub-flavoured table per dataset (no tabulate dependency), the diagnostics, then the
    cross-validation tables of the datasets with one (see crossval_markdown) and the seeds."""
    parts = [
        "# Last vs best test metrics per variant\n",
        "Test `loss` is the data loss alone; `penalty` is what the L2/L1 regularizers add"
        " (in `val_loss` and early stopping, as in Keras). A checkpoint whose outputs are not"
        " finite has `diverged` for its loss.",
    ]
    diag_cols = [f"{w}_{d}" for d in DIAGNOSTICS for w in ("last", "best")]
    present = [c for c in diag_cols if c in frame.columns]
    aside = [*present, *frame.columns.intersection([*CV_COLUMNS, *SEED_COLUMNS])]
    parts += _tables(frame.drop(columns=aside))
    diag = frame[["variant", "dataset", *present]].dropna(how="all", subset=present)
    if present and not diag.empty:
        parts.append(
            "\n# Activation diagnostics on the test split\n\nDead units: never positive"
            " (relu, leaky_relu). Saturated: share of activations in the flat range (tanh,"
            " sigmoid). Gradient: norm of the data loss's gradient at the first layer's"
            " kernel on one fixed batch."
        )
        parts += _tables(diag)
    parts += crossval_markdown(frame, references or {})
    parts += seeds_markdown(frame)
    return "\n".join(parts) + "\n"


def _tables(frame: pd.DataFrame) -> list[str]:
    parts = []
    for dataset, group in frame.groupby("dataset", sort=False):
        group = group.dropna(axis=1, how="all")
        cols = list(group.columns)
        parts.append(f"\n## {dataset}\n\n| " + " | ".join(cols) + " |")
        parts.append("|" + "---|" * len(cols))
        for _, row in group.iterrows():
            parts.append("| " + " | ".join(_cell(row[c]) for c in cols) + " |")
    return parts


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if pd.isna(value) else f"{value:.4f}"
    return str(value)


def write_plot_csv(frame: pd.DataFrame, path: Path) -> None:
    """The last_vs_best plot's data: variant, last_accuracy, best_accuracy."""
    write_atomic(path, frame[PLOT_COLUMNS].to_csv(index=False).encode())
