"""The cross-validation part of compare's report: per dataset, each cross-validated variant's
mean ± sd beside the logistic reference and the majority baseline on the same folds
(metrics/crossval/<variant>.json), and in words whether it beats them: a paired comparison
over the shared folds (study.reports.paired: the Nadeau-Bengio corrected resampled t-test)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from study.reports.paired import ALPHA, Paired, corrected_ttest, relation

# A paired test's (mean difference, p-value); None when a fold diverged.
Figures = tuple[float, float] | None

# Cross-validated metrics (metrics/crossval/<variant>.json), as cv_<metric>_mean and _sd.
CV_METRICS = {"auc": "AUC", "balanced_accuracy": "balanced accuracy", "accuracy": "accuracy"}
REFERENCES = {"majority": "the majority baseline", "logistic": "the logistic reference"}
# Compared with the references fold by fold: the threshold-free and the balanced metric.
PAIRED_METRICS = ("auc", "balanced_accuracy")
# Per paired metric and reference: the mean per-fold difference variant - reference and the
# corrected t-test's p-value, as cv_<metric>_vs_<reference>_diff and _p.
PAIRED_COLUMNS = [
    f"cv_{m}_vs_{r}_{s}" for m in PAIRED_METRICS for r in REFERENCES for s in ("diff", "p")
]
CV_COLUMNS = [f"cv_{m}_{s}" for m in CV_METRICS for s in ("mean", "sd")] + PAIRED_COLUMNS


def read_crossval(variants: list[str], metrics_dir: Path) -> dict[str, dict[str, Any]]:
    """metrics/crossval/<variant>.json (the crossval stages') of `variants` that have one:
    the ones crossval.variants lists, so that a stale file of a variant taken off that list
    feeds neither the report nor the champion."""
    paths = {v: metrics_dir / "crossval" / f"{v}.json" for v in variants}
    return {v: json.loads(path.read_text()) for v, path in paths.items() if path.is_file()}


def cv_fields(doc: dict[str, Any] | None) -> dict[str, Any]:
    """A variant's CV_COLUMNS from its crossval file, or nothing without one."""
    if doc is None:
        return {}
    scores = doc["variant"]
    out = {f"cv_{m}_{s}": scores[m][s] for m in CV_METRICS for s in ("mean", "sd")}
    for metric in PAIRED_METRICS:
        for ref in REFERENCES:
            test = paired(doc, "variant", ref, metric)
            out[f"cv_{metric}_vs_{ref}_diff"] = None if test is None else test.mean
            out[f"cv_{metric}_vs_{ref}_p"] = None if test is None else test.p
    return out


def paired(doc: dict[str, Any], a: str, b: str, metric: str) -> Paired | None:
    """Model `a` vs model `b` of one crossval file on `metric`, fold by fold (the corrected
    resampled t-test); None when a fold has no score (a diverged fit)."""
    mine, other = doc[a][metric]["folds"], doc[b][metric]["folds"]
    if any(v is None for v in (*mine, *other)):
        return None
    return corrected_ttest(mine, other, doc["folds"])


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
    whether each variant beats each of them (the paired rule, stated in the report)."""
    if "cv_accuracy_mean" not in frame.columns:
        return []
    parts = [
        "\n# Cross-validated, against the logistic reference and the majority baseline\n",
        "Mean ± sd over the folds of each dataset's non-test rows (each variant refitted per"
        " fold, its last model scored on the held-out rows; each fold's features encoded on"
        " its fit rows only); test: the best checkpoint on the test split. Against a reference"
        " the models are paired fold by fold: Δ is the mean over the folds of variant -"
        " reference, p the two-sided p-value of the Nadeau-Bengio corrected resampled t-test"
        " (the folds' training sets overlap, so the plain paired t-test would call too much"
        f" significant). *Beats* means Δ > 0 at p < {ALPHA}; *is below* Δ < 0 at p < {ALPHA};"
        " otherwise *is not distinguishable from*.",
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
            tests = {(m, r): _from_row(row, m, r) for m in PAIRED_METRICS for r in REFERENCES}
            words.append(verdict(row["variant"], mine, ref, tests))
        for key, label in (
            ("logistic", "logistic regression (reference)"),
            ("majority", "majority class"),
        ):
            cells = [_band(ref[key][m]["mean"], ref[key][m]["sd"]) for m in CV_METRICS]
            parts.append(f"| {label} | " + " | ".join(cells + [""] * len(test_cols)) + " |")
        logistic = {m: (ref["logistic"][m]["mean"], ref["logistic"][m]["sd"]) for m in CV_METRICS}
        tests = {}
        for metric in PAIRED_METRICS:
            test = paired(ref, "logistic", "majority", metric)
            tests[(metric, "majority")] = None if test is None else (test.mean, test.p)
        words.append(verdict("logistic regression (reference)", logistic, ref, tests))
        parts += ["", *words]
    return parts


def _from_row(row: pd.Series, metric: str, ref: str) -> Figures:
    """The paired test's figures cv_fields put in a variant's row."""
    diff, p = row.get(f"cv_{metric}_vs_{ref}_diff"), row.get(f"cv_{metric}_vs_{ref}_p")
    return None if pd.isna(diff) or pd.isna(p) else (float(diff), float(p))


def verdict(
    variant: str,
    mine: dict[str, tuple[float, float]],
    ref: dict[str, Any],
    tests: dict[tuple[str, str], Figures],
) -> str:
    """One line: per paired metric, `mine` against each reference in `tests` (keyed by
    (metric, reference)): its mean ± sd, Δ and p, and the relation."""
    keys = [key for key in REFERENCES if any(k == key for _, k in tests)]
    clauses, wins = [], {key: [] for key in keys}
    for metric in PAIRED_METRICS:
        against = []
        for key in keys:
            test = tests[(metric, key)]
            other = _band(ref[key][metric]["mean"], ref[key][metric]["sd"])
            rel = relation(*(test or (None, None)))
            figures = "" if test is None else f", Δ {test[0]:+.3f}, p {test[1]:.3g}"
            against.append(f"{rel} {REFERENCES[key]} ({other}{figures})")
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
