"""compare.png: every variant's last vs best test accuracy, one panel per dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI

import numpy as np
import pandas as pd
from matplotlib.figure import Figure


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
    heights = [len(p["variants"]) for p in panels.values()]
    fig = Figure(figsize=(8, 1.2 + 0.42 * sum(heights) + 0.6 * len(panels)))
    axes = fig.subplots(len(panels), 1, gridspec_kw={"height_ratios": heights}, squeeze=False)
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
    last_vs_best_chart(chart_panels(frame)).savefig(path, dpi=dpi)
