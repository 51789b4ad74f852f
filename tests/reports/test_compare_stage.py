"""The compare stage's outputs in the tiny study, against figures computed here from the files
the stage reads (metrics/*.json, metrics/crossval/*.json, models/*/train.json) with plain
json and numpy, not with study.reports' functions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from study.config.params import load_params
from study.config.paths import METRICS_DIR, MODELS_DIR, REPORTS_DIR


def tables(markdown: str) -> list[list[dict[str, str]]]:
    """Every table of a markdown text, in order, as rows of column -> cell."""
    lines, found = markdown.splitlines(), []
    for i, line in enumerate(lines[:-1]):
        if line.startswith("| ") and lines[i + 1].startswith("|---"):
            header = [c.strip() for c in line.strip("|").split("|")]
            rows = []
            for row in lines[i + 2 :]:
                if not row.startswith("|"):
                    break
                cells = [c.strip() for c in row.strip("|").split("|")]
                rows.append(dict(zip(header, cells, strict=True)))
            found.append(rows)
    return found


def rows_by(markdown: str, column: str) -> dict[str, dict[str, str]]:
    """The rows of the tables that have `column`, by their cell there (first table wins)."""
    out: dict[str, dict[str, str]] = {}
    for table in tables(markdown):
        for row in table:
            if column in row:
                out.setdefault(row[column], row)
    return out


def section(markdown: str, title: str) -> str:
    """The text of the top-level section `# <title>...`, up to the next one."""
    start = markdown.index(f"# {title}")
    end = markdown.find("\n# ", start)
    return markdown[start : end if end >= 0 else None]


def mean_sd(values: list[float]) -> str:
    """As the report writes a spread: mean ± sample sd."""
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


@pytest.fixture(scope="module")
def study(built_study) -> tuple[Path, list[str], dict[str, dict], str]:
    repo = built_study
    variants = load_params(repo).study_variants()
    metrics = {v: json.loads((repo / METRICS_DIR / f"{v}.json").read_text()) for v in variants}
    return repo, variants, metrics, (repo / REPORTS_DIR / "compare.md").read_text()


def test_the_results_tables_hold_each_variants_metrics_file(study):
    repo, variants, metrics, report = study
    results = section(report, "Last vs best")
    rows = rows_by(results, "variant")
    assert list(rows) == variants  # the listed variants, then the searched one
    for v, m in metrics.items():
        row, last, best = rows[v], m["last"], m["best"]
        summary = json.loads((repo / MODELS_DIR / v / "train.json").read_text())
        assert row["dataset"] == m["dataset"]
        assert float(row["last_accuracy"]) == pytest.approx(last["accuracy"], abs=5e-5)
        assert float(row["best_accuracy"]) == pytest.approx(best["accuracy"], abs=5e-5)
        gain = best["accuracy"] - last["accuracy"]
        assert float(row["gain_best_vs_last"]) == pytest.approx(gain, abs=1e-4)
        assert float(row["last_loss"]) == pytest.approx(last["loss"], abs=5e-5)
        assert float(row["best_loss"]) == pytest.approx(best["loss"], abs=5e-5)
        assert int(row["best_epoch"]) == m["best_epoch"]
        assert int(row["epochs_run"]) == m["epochs_run"]
        assert float(row["train_time_s"]) == pytest.approx(summary["train_time_s"], abs=5e-5)
    thoracic = metrics["thoracic_bce"]
    assert float(rows["thoracic_bce"]["best_auc"]) == pytest.approx(thoracic["best"]["auc"], 5e-5)
    saved = pd.read_csv(repo / REPORTS_DIR / "compare.csv")
    assert list(saved.columns) == ["variant", "last_accuracy", "best_accuracy"]
    assert list(saved["variant"]) == variants
    expected = [[metrics[v]["last"]["accuracy"], metrics[v]["best"]["accuracy"]] for v in variants]
    assert np.allclose(saved[["last_accuracy", "best_accuracy"]].to_numpy(), expected)
    png = (repo / REPORTS_DIR / "compare.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_crossval_table_is_the_folds_mean_and_sd(study):
    repo, _, metrics, report = study
    folds = json.loads((repo / METRICS_DIR / "crossval" / "thoracic_bce.json").read_text())
    rows = rows_by(section(report, "Cross-validated"), "model")
    models = {
        "thoracic_bce": "variant",
        "logistic regression (reference)": "logistic",
        "majority class": "majority",
    }
    columns = {"auc": "cv AUC", "balanced_accuracy": "cv balanced accuracy"}
    columns["accuracy"] = "cv accuracy"
    assert set(rows) == set(models)  # the listed thoracic_bce only, and its references
    for label, key in models.items():
        for metric, column in columns.items():
            assert rows[label][column] == mean_sd(folds[key][metric]["folds"]), (label, column)
    n_folds = len(folds["variant"]["auc"]["folds"])
    assert f"## thoracic: {n_folds} folds" in report
    assert rows["thoracic_bce"]["test AUC"] == f"{metrics['thoracic_bce']['best']['auc']:.3f}"


def test_the_seeds_table_is_each_seeds_mean_and_sd(study):
    _, _, metrics, report = study
    rows = rows_by(section(report, "Noise across seeds"), "variant")
    seeds = metrics["dropout"]["seeds"]  # dropout trains with 2 seeds in the tiny study
    row = rows["dropout"]
    assert int(row["seeds"]) == len(seeds["seeds"]) == 2
    for column in ("last_accuracy", "best_accuracy"):
        values = seeds[column]["values"]
        expected = f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"
        assert row[column.replace("_", " ")] == expected
