"""The search stage's outputs: search/best.yaml (the best trial as a variant entry), the
trials table (CSV for DVC plots, Markdown for people), the summary metrics and a figure
(validation accuracy per trial against its settings, and how many trials each ASHA rung
kept)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from study.config.errors import StageError
from study.config.params import Params
from study.config.paths import METRICS_DIR, REPORTS_DIR, SEARCH_BEST
from study.config.search import Search
from study.io.files import write_atomic
from study.search.space import is_log, searched_variant

# What the stage writes, relative to the repository (dvc.yaml's search outs and metrics).
OUTPUTS = (
    SEARCH_BEST,
    METRICS_DIR / "search.json",
    *(REPORTS_DIR / name for name in ("search_trials.csv", "search_trials.md", "search.png")),
)
OUTCOMES = ("completed", "stopped_early", "time_limit", "failed")
DIGITS = 6


def trial_row(trial: dict[str, Any], search: Search) -> dict[str, Any]:
    """One trial as a table row: its settings and its best epoch by search.metric.

    `trial` (study/search/tune.py's Records): index, trial_id, config, outcome, attempts and
    results, one dict per reported epoch (epoch, val_accuracy, val_loss, node_id, t_s)."""
    results = [r for r in trial["results"] if math.isfinite(r.get(search.metric, math.nan))]
    sign = 1 if search.metric == "val_accuracy" else -1
    best = max(results, key=lambda r: sign * r[search.metric], default={})
    row = {
        "trial": trial["index"],
        "trial_id": trial["trial_id"],
        "outcome": trial["outcome"],
        "epochs": len(trial["results"]),
        "best_epoch": best.get("epoch"),
        "val_accuracy": _round(best.get("val_accuracy")),
        "val_loss": _round(best.get("val_loss")),
    }
    row.update({key: _round(trial["config"].get(key)) for key in search.space})
    last = trial["results"][-1] if trial["results"] else {}
    row["node_id"] = last.get("node_id", "")[:12]
    row["attempts"] = trial["attempts"]
    row["seconds"] = round(last.get("trial_s", 0.0), 1)
    return row


def _round(value: Any) -> Any:
    return round(value, DIGITS) if isinstance(value, float) else value


def best_row(rows: list[dict[str, Any]], metric: str) -> dict[str, Any] | None:
    """The row with the best value of metric (val_accuracy: highest); the first on a tie."""
    scored = [r for r in rows if r[metric] is not None]
    if not scored:
        return None
    sign = 1 if metric == "val_accuracy" else -1
    return max(scored, key=lambda r: (sign * r[metric], -r["trial"]))


def rungs(search: Search) -> list[int]:
    """ASHA's milestones: grace_period * reduction_factor**k below max_epochs, and max_epochs."""
    out, epoch = [], search.grace_period
    while epoch < search.max_epochs:
        out.append(int(epoch))
        epoch = math.ceil(epoch * search.reduction_factor)
    return [*out, search.max_epochs]


def rung_counts(rows: list[dict[str, Any]], search: Search) -> dict[int, int]:
    """How many trials reached each rung (epoch 1: every trial that reported)."""
    return {e: sum(r["epochs"] >= e for r in rows) for e in [1, *rungs(search)]}


def summary(rows: list[dict[str, Any]], search: Search, wall_s: float) -> dict[str, Any]:
    """metrics/search.json: the best trial's validation metrics and what the trials did."""
    best = best_row(rows, search.metric)
    out: dict[str, Any] = {
        "best": {k: best[k] for k in ("trial", "val_accuracy", "val_loss", "best_epoch")},
        "trials": len(rows),
        **{o: sum(r["outcome"] == o for r in rows) for o in OUTCOMES},
        "epochs_trained": sum(r["epochs"] for r in rows),
        # trials that reached each rung's epoch: epoch_01 (all that reported), epoch_02, ...
        "rungs": {
            f"epoch_{k:0{len(str(search.max_epochs))}d}": v
            for k, v in rung_counts(rows, search).items()
        },
        "wall_time_s": round(wall_s, 1),
    }
    return out


def to_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def to_markdown(rows: list[dict[str, Any]], stats: dict[str, Any], search: Search) -> str:
    """The trials table, best first, under a summary of the search."""
    metric = search.metric
    sign = -1 if metric == "val_accuracy" else 1
    ranked = sorted(rows, key=lambda r: (r[metric] is None, sign * (r[metric] or 0), r["trial"]))
    cols = list(rows[0])
    counts = ", ".join(f"{stats[o]} {o.replace('_', ' ')}" for o in OUTCOMES)
    rung_text = ", ".join(f"epoch {int(k[6:])}: {v}" for k, v in stats["rungs"].items())
    lines = [
        "# Hyperparameter search (Ray Tune: ASHA + Optuna TPE), validation split\n",
        f"{stats['trials']} trials ({counts}) in {stats['wall_time_s']} s;"
        f" best: trial {stats['best']['trial']}, {metric} {stats['best'][metric]:.4f}"
        f" at epoch {stats['best']['best_epoch']}. Trials reaching each ASHA rung: {rung_text}.",
        f"The best trial is variant `{search.variant}` (search/best.yaml).\n",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    for row in ranked:
        lines.append("| " + " | ".join(_cell(row[c], c) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: Any, column: str = "") -> str:
    if column == "seconds":
        return f"{value:.1f}"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-3 and value else f"{value:.4f}"
    return "" if value is None else str(value)


def figure(rows: list[dict[str, Any]], search: Search) -> Any:
    """Validation accuracy per trial against each searched field, and trials per ASHA rung."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    keys = list(search.space)
    ncols = 4
    nrows = math.ceil((len(keys) + 1) / ncols)
    fig = Figure(figsize=(3.2 * ncols, 2.8 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    colors = {"completed": "#3182bd", "stopped_early": "#fd8d3c", "time_limit": "#9e9ac8"}
    scored = [r for r in rows if r["val_accuracy"] is not None]
    best = best_row(rows, search.metric)

    def x(row: dict, key: str) -> Any:  # categories (activation, null) as labels
        return str(row[key]) if row[key] is None or isinstance(row[key], str) else row[key]

    for ax, key in zip(axes.flat, keys, strict=False):
        for outcome, color in colors.items():
            sel = [r for r in scored if r["outcome"] == outcome]
            xs = [x(r, key) for r in sel]
            ax.scatter(xs, [r["val_accuracy"] for r in sel], c=color, s=22, label=outcome)
        if best is not None and best["val_accuracy"] is not None:
            ring = {"s": 90, "facecolors": "none", "edgecolors": "#d62728", "linewidths": 1.5}
            ax.scatter([x(best, key)], [best["val_accuracy"]], label="best", **ring)
        if is_log(search.space, key):
            ax.set_xscale("log")
        ax.set_xlabel(key)
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("val_accuracy (best epoch)")
    counts = rung_counts(rows, search)
    bar_ax = axes.flat[len(keys)]
    bar_ax.bar([str(k) for k in counts], list(counts.values()), color="#636363")
    bar_ax.set_xlabel("epochs reached (ASHA rungs)")
    bar_ax.set_ylabel("trials")
    for ax in list(axes.flat)[len(keys) + 1 :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(handles))
    fig.suptitle(f"Search: {len(rows)} trials on the validation split")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def write_outputs(root: Path, rows: list[dict], stats: dict, search: Search, best: dict) -> None:
    """search/best.yaml (`best`, the best trial's variant entry), the metrics and reports."""
    import yaml

    top = best_row(rows, search.metric)
    header = (
        f"# The search's best trial (the search stage): trial {top['trial']} of {len(rows)},"
        f" {search.metric} {top[search.metric]:.4f} at epoch {top['best_epoch']}.\n"
        f"# Variant `{search.variant}`: train.defaults, then these presets and fields (the"
        " trial's),\n# then search.variant_fields: dvc.yaml's train_searched trains it like"
        " any variant.\n"
    )
    best_yaml, metrics, csv_file, md_file, png_file = (root / path for path in OUTPUTS)
    write_atomic(best_yaml, (header + yaml.safe_dump(best, sort_keys=False)).encode())
    write_atomic(metrics, (json.dumps(stats, indent=2, sort_keys=True) + "\n").encode())
    write_atomic(csv_file, to_csv(rows).encode())
    write_atomic(md_file, to_markdown(rows, stats, search).encode())
    figure(rows, search).savefig(png_file, dpi=100)


def outcome(record: dict, search: Search, stopped_early: set, time_limit_hit: bool) -> str:
    """completed, stopped_early (by ASHA), time_limit (stopped by search.time_limit_s), failed."""
    if record["error"]:
        return "failed"
    if record["trial_id"] in stopped_early:
        return "stopped_early"
    if len(record["results"]) >= search.max_epochs or not time_limit_hit:
        return "completed"
    return "time_limit"


def finish(
    params: Params, records: dict, stopped_early: set, fit_s: float, wall_s: float, root: Path
) -> dict[str, Any]:
    """Classify the trials (records: study/search/tune.py's Records.trials), write
    search/best.yaml and the reports; the summary metrics."""
    search = params.search
    limit_hit = fit_s >= search.time_limit_s * 0.99
    for record in records.values():
        record["outcome"] = outcome(record, search, stopped_early, limit_hit)
    rows = [trial_row(r, search) for r in sorted(records.values(), key=lambda r: r["index"])]
    best = best_row(rows, search.metric)
    if best is None:
        raise StageError(
            f"search: no trial reported a {search.metric} ({len(rows)} started); see the"
            f" trials' errors above and Tune's files under {search.storage}"
        )
    record = next(r for r in records.values() if r["index"] == best["trial"])
    best_entry = searched_variant(params, search, record["config"])  # validated as train reads it
    stats = summary(rows, search, wall_s)
    write_outputs(root, rows, stats, search, best_entry)
    return stats
