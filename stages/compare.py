"""compare: one table and one chart of every variant's last vs best test metrics.

Writes reports/compare.md, reports/compare.csv (DVC plot data) and reports/compare.png,
and logs them to an MLflow run named "compare".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from stages.cvreport import CV_COLUMNS, crossval_markdown, read_references
from stages.formats import write_atomic
from stages.params import (
    METRICS_DIR,
    MODELS_DIR,
    REPO_ROOT,
    REPORTS_DIR,
    load_params,
    require,
    run_stage,
    study_variants,
)
from stages.seedreport import SEED_COLUMNS, seed_fields, seeds_markdown

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


def collect(variants: dict[str, str], metrics_dir: Path, models_dir: Path) -> pd.DataFrame:
    """One row per variant (name -> dataset) from metrics/*.json and models/*/train.json."""
    rows = []
    for name, dataset in variants.items():
        metrics = json.loads((metrics_dir / f"{name}.json").read_text())
        train = json.loads((models_dir / name / "train.json").read_text())
        row: dict[str, Any] = {
            "variant": name,
            "dataset": dataset,
            "last_accuracy": metrics["last"]["accuracy"],
            "best_accuracy": metrics["best"]["accuracy"],
            "gain_best_vs_last": round(
                metrics["best"]["accuracy"] - metrics["last"]["accuracy"], 6
            ),
            "last_loss": metrics["last"]["loss"],
            "best_loss": metrics["best"]["loss"],
            "best_epoch": metrics["best_epoch"],
            "epochs_run": metrics["epochs_run"],
            "train_time_s": train["train_time_s"],
        }
        for extra in ("penalty", "auc", "balanced_accuracy", *DIAGNOSTICS):
            if extra in metrics["last"]:
                row[f"last_{extra}"] = metrics["last"][extra]
                row[f"best_{extra}"] = metrics["best"][extra]
        if "majority_accuracy" in metrics:
            row["majority_accuracy"] = metrics["majority_accuracy"]
        for name, stats in metrics.get("cv", {}).items():
            if isinstance(stats, dict):
                row |= {f"cv_{name}_mean": stats["mean"], f"cv_{name}_sd": stats["sd"]}
        rows.append(row | seed_fields(metrics))
    frame = pd.DataFrame(rows)
    extras = [c for c in frame.columns if c not in COLUMNS]
    return frame[COLUMNS + extras]


def to_markdown(frame: pd.DataFrame, references: dict[str, dict[str, Any]] | None = None) -> str:
    """GitHub-flavoured table per dataset (no tabulate dependency), the diagnostics, then the
    cross-validation tables of the datasets with a reference (see crossval_markdown)."""
    parts = [
        "# Last vs best test metrics per variant\n",
        "Test `loss` is the data loss alone; `penalty` is what the L2/L1 regularizers add"
        " (in `val_loss` and early stopping, as in Keras).",
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
        return f"{value:.4f}"
    return str(value)


def write_plot_csv(frame: pd.DataFrame, path: Path) -> None:
    """The last_vs_best plot's data: variant, last_accuracy, best_accuracy."""
    write_atomic(path, frame[PLOT_COLUMNS].to_csv(index=False).encode())


def chart_panels(frame: pd.DataFrame) -> dict[str, dict]:
    """compare.png's data: per dataset its variants' last and best accuracy, the
    majority-class accuracy where the metrics have it (thoracic), and where there are folds
    the cross-validated accuracy's mean and sd ("cv", "cv_sd"; NaN for a variant without).
    When every variant of the dataset has several seeds, last and best are their means over
    the seeds, with "last_sd", "best_sd" and "seeds" (the fewest seeds of a variant)."""
    panels = {}
    for dataset, group in frame.groupby("dataset", sort=False):
        majority = group.get("majority_accuracy")
        panels[dataset] = {
            "variants": list(group["variant"]),
            "last": list(group["last_accuracy"]),
            "best": list(group["best_accuracy"]),
            "majority": None if majority is None or majority.isna().all() else majority.max(),
        }
        seeds = group.get("seeds")
        if seeds is not None and (seeds > 1).all():  # bars: the mean over the seeds, ± sd
            panels[dataset] |= {
                "seeds": int(seeds.min()),
                **{w: list(group[f"{w}_accuracy_mean"]) for w in ("last", "best")},
                **{f"{w}_sd": list(group[f"{w}_accuracy_sd"]) for w in ("last", "best")},
            }
        cv = group.get("cv_accuracy_mean")
        if cv is not None and cv.notna().any():
            panels[dataset] |= {"cv": list(cv), "cv_sd": list(group["cv_accuracy_sd"])}
    return panels


def last_vs_best_chart(panels: dict[str, dict]) -> Any:
    """Last vs best test accuracy, one panel per dataset (horizontal bars, variant names
    readable), x axis fitted to the data, the majority-class accuracy drawn where given,
    one legend below the panels, clear of the bars.

    panels: dataset -> {"variants": [...], "last": [...], "best": [...], "majority": float|None}
    and, for a dataset with folds, "cv" and "cv_sd" [...]: a third bar with ± sd error bars;
    with "seeds", "last_sd" and "best_sd": last and best are means, drawn with ± sd bars.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    heights = [len(p["variants"]) for p in panels.values()]
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(8, 1.2 + 0.42 * sum(heights) + 0.6 * len(panels)),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    for ax, (dataset, panel) in zip(axes[:, 0], panels.items(), strict=True):
        y = np.arange(len(panel["variants"]))
        step = 0.27 if "cv" in panel else 0.4
        shift = step if "cv" in panel else step / 2  # last, best[, cv] centred on the tick
        over = f" (mean ± sd, {panel['seeds']} seeds)" if "seeds" in panel else ""
        values = []
        for offset, which, label, color in (
            (-shift, "last", "last model", "#9ecae1"),
            (step - shift, "best", "best checkpoint", "#3182bd"),
        ):
            mean = np.array(panel[which], dtype=float)
            sd = np.array(panel.get(f"{which}_sd", np.zeros(len(mean))), dtype=float)
            xerr = sd if "seeds" in panel else None
            ax.barh(y + offset, mean, height=step, xerr=xerr, label=label + over, color=color)
            values += [*(mean - sd), *(mean + sd)]
        if "cv" in panel:
            mean, sd = np.array(panel["cv"], dtype=float), np.array(panel["cv_sd"], dtype=float)
            label = "cross-validated (mean ± sd)"
            ax.barh(y + step, mean, height=step, xerr=sd, label=label, color="#fdae6b")
            values += [v for v in (*(mean - sd), *(mean + sd)) if np.isfinite(v)]
        if panel.get("majority") is not None:
            ax.axvline(panel["majority"], color="#d62728", linestyle="--", label="majority class")
            values.append(panel["majority"])
        span = max(values) - min(values)
        margin = max(0.02, 0.1 * span)
        ax.set_xlim(max(0.0, min(values) - margin), min(1.0, max(values) + margin))
        ax.set_yticks(y, panel["variants"])
        ax.invert_yaxis()  # first variant on top, as in the report's table
        ax.set_title(dataset, loc="left")
        ax.grid(axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel("accuracy (test split; cross-validated: folds of the other rows)")
    handles = {h.get_label(): h for ax in axes[:, 0] for h in ax.get_legend_handles_labels()[0]}
    # Two entries per row and a two-line title: both stay inside the figure's 8 inches.
    ncol = 2
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=ncol)
    fig.suptitle(
        "Last model vs best checkpoint (lowest val_loss), test accuracy;\n"
        "cross-validated where there are folds"
    )
    legend_in = 0.3 * -(-len(handles) // ncol) + 0.1  # its rows, in inches
    fig.tight_layout(rect=(0, legend_in / fig.get_figheight(), 1, 1))
    return fig


def plot_chart(frame: pd.DataFrame, path: Path, dpi: int) -> None:
    """Last vs best test accuracy per variant, one panel per dataset, as a PNG."""
    from stages.figures import save

    save(last_vs_best_chart(chart_panels(frame)), path, dpi)


def main() -> None:
    params = load_params()
    # The dataset of each variant as trained (train.json), so compare needs no train params.
    variants = {
        name: json.loads((REPO_ROOT / MODELS_DIR / name / "train.json").read_text())["dataset"]
        for name in study_variants(params)  # the seed's variants, then the searched one
    }
    frame = collect(variants, REPO_ROOT / METRICS_DIR, REPO_ROOT / MODELS_DIR)
    out = REPO_ROOT / REPORTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    references = read_references(list(variants.values()), REPO_ROOT / METRICS_DIR)
    write_atomic(out / "compare.md", to_markdown(frame, references).encode())
    write_plot_csv(frame, out / "compare.csv")
    plot_chart(frame, out / "compare.png", require(params, "compare.chart_dpi"))

    from stages.tracking import project_run_id, setup_mlflow

    mlflow = setup_mlflow(params)
    parent = project_run_id()  # under `mlflow run`: a child of the project's run
    with mlflow.start_run(run_name="compare", parent_run_id=parent, tags={"stage": "compare"}):
        for name in ("compare.md", "compare.csv", "compare.png"):
            mlflow.log_artifact(str(out / name))
    print((out / "compare.md").read_text())


if __name__ == "__main__":
    run_stage(main)
