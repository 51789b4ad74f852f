"""The cross-validation part of compare's report: per dataset, each cross-validated variant's
mean ± sd beside the logistic reference and the majority baseline on the same folds
(metrics/crossval/<variant>.json), and in words whether it beats them beyond one sd."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

# Cross-validated metrics (metrics/crossval/<variant>.json), as cv_<metric>_mean and _sd.
CV_METRICS = {"auc": "AUC", "balanced_accuracy": "balanced accuracy", "accuracy": "accuracy"}
CV_COLUMNS = [f"cv_{m}_{s}" for m in CV_METRICS for s in ("mean", "sd")]
REFERENCES = {"majority": "the majority baseline", "logistic": "the logistic reference"}


def read_crossval(variants: list[str], metrics_dir: Path) -> dict[str, dict[str, Any]]:
    """metrics/crossval/<variant>.json (the crossval stages') of the variants that have one."""
    paths = {v: metrics_dir / "crossval" / f"{v}.json" for v in variants}
    return {v: json.loads(path.read_text()) for v, path in paths.items() if path.is_file()}


def cv_fields(doc: dict[str, Any] | None) -> dict[str, Any]:
    """A variant's CV_COLUMNS from its crossval file, or nothing without one."""
    if doc is None:
        return {}
    scores = doc["variant"]
    return {f"cv_{m}_{s}": scores[m][s] for m in CV_METRICS for s in ("mean", "sd")}


def references(docs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per dataset the reference rows (logistic, majority) and its folds: the same in every
    crossval file of the dataset (same rows, folds and seed), taken from the first."""
    out: dict[str, dict[str, Any]] = {}
    for doc in docs.values():
        out.setdefault(doc["dataset"], doc)
    return out


def crossval_markdown(frame: pd.DataFrame, references: dict[str, dict[str, Any]]) -> list[str]:
    """Per dataset with a reference: every cross-validated variant's mean ± sd over the folds
    beside its best checkpoint's test scores, the logistic and majority rows, then in words
    whether each variant beats each of them beyond one sd."""
    if "cv_accuracy_mean" not in frame.columns:
        return []
    parts = [
        "\n# Cross-validated, against the logistic reference and the majority baseline\n",
        "Mean ± sd over the folds of each dataset's non-test rows (each variant refitted per"
        " fold, its last model scored on the held-out rows); test: the best checkpoint on the"
        " test split. *Beats* means beyond one sd: its mean - sd is above the other's mean +"
        " sd; *is below* the reverse; otherwise *is within one sd of*.",
    ]
    test_cols = [f"best_{m}" for m in CV_METRICS]
    for dataset, group in frame.dropna(subset=["cv_accuracy_mean"]).groupby("dataset", sort=False):
        if dataset not in references:
            continue
        ref = references[dataset]
        head = [f"cv {label}" for label in CV_METRICS.values()]
        head += [f"test {label}" for label in CV_METRICS.values()]
        repeats = f"{ref['repeats']} repeat" + ("s" if ref["repeats"] != 1 else "")
        parts.append(
            f"\n## {dataset}: {ref['folds']} folds x {repeats} of {ref['rows']} rows"
            "\n\n| model | " + " | ".join(head) + " |"
        )
        parts.append("|" + "---|" * (len(head) + 1))
        words = []
        for _, row in group.iterrows():
            mine = {m: (row[f"cv_{m}_mean"], row[f"cv_{m}_sd"]) for m in CV_METRICS}
            cells = [_band(*mine[m]) for m in CV_METRICS]
            cells += [f"{row[c]:.3f}" if pd.notna(row.get(c)) else "" for c in test_cols]
            parts.append(f"| {row['variant']} | " + " | ".join(cells) + " |")
            words.append(verdict(row["variant"], mine, ref))
        for key, label in (
            ("logistic", "logistic regression (reference)"),
            ("majority", "majority class"),
        ):
            cells = [_band(ref[key][m]["mean"], ref[key][m]["sd"]) for m in CV_METRICS]
            parts.append(f"| {label} | " + " | ".join(cells + [""] * len(test_cols)) + " |")
        logistic = {m: (ref["logistic"][m]["mean"], ref["logistic"][m]["sd"]) for m in CV_METRICS}
        words.append(verdict("logistic regression (reference)", logistic, ref, ("majority",)))
        parts += ["", *words]
    return parts


def relation(mine: tuple[float, float], other: tuple[float, float]) -> str:
    """How (mean, sd) `mine` stands to `other`: "beats", "is below" (their ±1 sd bands apart)
    or "is within one sd of"; "cannot be compared with" when a fold diverged (no mean)."""
    if pd.isna(mine[0]) or pd.isna(other[0]):
        return "cannot be compared with"
    if mine[0] - mine[1] > other[0] + other[1]:
        return "beats"
    if mine[0] + mine[1] < other[0] - other[1]:
        return "is below"
    return "is within one sd of"


def verdict(
    variant: str,
    mine: dict[str, tuple[float, float]],
    ref: dict[str, Any],
    keys: tuple[str, ...] = tuple(REFERENCES),
) -> str:
    """One line: per threshold-free and balanced metric, `mine` against each reference row."""
    clauses, wins = [], {key: [] for key in keys}
    for metric in ("auc", "balanced_accuracy"):
        against = []
        for key in keys:
            name = REFERENCES[key]
            other = (ref[key][metric]["mean"], ref[key][metric]["sd"])
            rel = relation(mine[metric], other)
            against.append(f"{rel} {name} ({_band(*other)})")
            if rel == "beats":
                wins[key].append(CV_METRICS[metric])
        clauses.append(f"{CV_METRICS[metric]} {_band(*mine[metric])} " + " and ".join(against))
    summary = "; ".join(
        f"beats {REFERENCES[key]}: " + (f"yes ({', '.join(wins[key])})" if wins[key] else "no")
        for key in keys
    )
    return f"- **{variant}**: {summary}. " + "; ".join(clauses) + "."


def _band(mean: float | None, sd: float | None) -> str:
    return "diverged" if pd.isna(mean) else f"{mean:.3f} ± {sd:.3f}"
