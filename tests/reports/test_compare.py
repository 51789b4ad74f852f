"""study.reports (compare, chart, crossval) and the compare stage: the table and chart of last
vs best per variant, the cross-validation section, the DVC plot's data."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml
from conftest import dvc

from study.config.paths import REPO_ROOT
from study.reports.chart import chart_panels, last_vs_best_chart, plot_chart
from study.reports.compare import (
    PLOT_COLUMNS,
    collect,
    read_metrics,
    to_markdown,
    write_plot_csv,
)
from study.reports.crossval import cv_fields, read_crossval, references
from study.reports.paired import corrected_ttest

VARIANTS = ["baseline", "thoracic_bce"]


def metrics_docs() -> dict[str, dict]:
    """metrics/<variant>.json of a Fashion-MNIST and a thoracic variant, as evaluate writes."""
    runs = {
        "baseline": ({"loss": 0.5, "accuracy": 0.80}, {"loss": 0.45, "accuracy": 0.83}, None),
        "thoracic_bce": (
            {"loss": 0.4, "accuracy": 0.85, "auc": 0.6, "balanced_accuracy": 0.5},
            {"loss": 0.39, "accuracy": 0.84, "auc": 0.65, "balanced_accuracy": 0.52},
            0.85,
        ),
    }
    docs = {}
    for name, (last, best, majority) in runs.items():
        doc = {"dataset": "thoracic" if majority else "fashion_mnist", "last": last, "best": best}
        doc |= {"best_epoch": 4, "epochs_run": 9}
        doc |= {"best_val_loss": 0.4, "best_val_accuracy": 0.8}
        if majority is not None:
            doc["majority_accuracy"] = majority
        docs[name] = doc
    return docs


# Each training's seconds (models/<variant>/train.json), which compare shows.
SECONDS = {"baseline": 1.5, "thoracic_bce": 1.5}


def write_metrics(tmp_path, docs=None):
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    for name, doc in (docs or metrics_docs()).items():
        (metrics / f"{name}.json").write_text(json.dumps(doc))
    return metrics


def test_read_metrics_collect_and_markdown(tmp_path):
    metrics = write_metrics(tmp_path)
    docs = read_metrics(VARIANTS, metrics)
    assert docs == metrics_docs()
    frame = collect(docs, {}, SECONDS)
    row = frame.set_index("variant").loc["baseline"]
    assert row["gain_best_vs_last"] == 0.03 and row["epochs_run"] == 9
    assert row["train_time_s"] == 1.5  # the training's (train.json), not the metrics file's
    assert frame.set_index("variant").loc["thoracic_bce", "best_auc"] == 0.65
    md = to_markdown(frame)
    assert "## fashion_mnist" in md and "## thoracic" in md
    assert "| baseline | fashion_mnist | 0.8000 | 0.8300 |" in md
    assert "majority_accuracy" in md.split("## thoracic")[1]
    assert "majority_accuracy" not in md.split("## thoracic")[0]  # empty columns dropped
    assert "Cross-validated" not in md and "Noise across seeds" not in md  # none of either


def test_chart_is_a_png(tmp_path):
    frame = collect(metrics_docs(), {}, SECONDS)
    plot_chart(frame, tmp_path / "c.png", dpi=50)
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def last_vs_best_plot() -> dict:
    plots = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["plots"]
    (plot,) = (p["last_vs_best"] for p in plots if "last_vs_best" in p)
    return plot


def test_plot_csv_has_one_row_per_variant_with_last_and_best_side_by_side(tmp_path):
    frame = collect(metrics_docs(), {}, SECONDS)
    write_plot_csv(frame, tmp_path / "compare.csv")
    rows = (tmp_path / "compare.csv").read_text().splitlines()
    assert rows == [
        "variant,last_accuracy,best_accuracy",
        "baseline,0.8,0.83",
        "thoracic_bce,0.85,0.84",
    ]


def test_last_vs_best_plot_encodes_last_and_best_as_two_fields():
    plot = last_vs_best_plot()
    assert plot["x"] == "variant"
    assert plot["y"] == {"reports/compare.csv": ["last_accuracy", "best_accuracy"]}
    assert [plot["x"], *plot["y"]["reports/compare.csv"]] == PLOT_COLUMNS


def test_dvc_draws_last_and_best_as_two_coloured_series(tmp_path):
    """`dvc plots show` on the real definition and template: one bar per variant and field,
    the accuracy on the quantitative axis, the colour telling last from best."""
    frame = collect(metrics_docs(), {}, SECONDS)
    repo = tmp_path / "repo"
    (repo / "reports").mkdir(parents=True)
    write_plot_csv(frame, repo / "reports" / "compare.csv")
    dvc(repo, "init", "--no-scm", "-q")
    shutil.copytree(REPO_ROOT / ".dvc" / "plots", repo / ".dvc" / "plots")
    plots = {"plots": [{"last_vs_best": last_vs_best_plot()}]}
    (repo / "dvc.yaml").write_text(yaml.safe_dump(plots))
    (shown,) = json.loads(dvc(repo, "plots", "show", "--json"))["data"]["last_vs_best"]
    spec = shown["content"]
    value_axis = next(a for a in spec["encoding"].values() if a.get("type") == "quantitative")
    colour = spec["encoding"]["color"]["field"]
    bars = {
        (d["variant"], d[colour]): float(d[value_axis["field"]]) for d in spec["data"]["values"]
    }
    assert bars == {
        ("baseline", "last_accuracy"): 0.80,
        ("baseline", "best_accuracy"): 0.83,
        ("thoracic_bce", "last_accuracy"): 0.85,
        ("thoracic_bce", "best_accuracy"): 0.84,
    }


def test_penalty_and_activation_diagnostics_in_the_report():
    docs = metrics_docs()
    for which, dead in (("last", 0.25), ("best", 0.125)):
        docs["thoracic_bce"][which] |= {
            "penalty": 0.1,
            "dead_fraction": dead,
            "first_layer_grad_norm": 2.0,
        }
    report = to_markdown(collect(docs, {}, SECONDS))
    main, diagnostics = report.split("# Activation diagnostics on the test split")
    assert "best_penalty" in main and "dead_fraction" not in main
    assert "| thoracic_bce | thoracic | 0.2500 | 0.1250 | 2.0000 | 2.0000 |" in diagnostics
    assert "baseline" not in diagnostics  # no hidden layers, no diagnostics


def test_chart_panels_per_dataset_with_the_majority_baseline():
    panels = chart_panels(collect(metrics_docs(), {}, SECONDS))
    assert list(panels) == ["fashion_mnist", "thoracic"]
    assert panels["fashion_mnist"] == {
        "variants": ["baseline"],
        "last": [0.80],
        "best": [0.83],
        "majority": None,
    }
    assert panels["thoracic"]["majority"] == 0.85
    fig = last_vs_best_chart(panels)
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["fashion_mnist", "thoracic"]
    low, high = fig.axes[1].get_xlim()
    assert 0.7 < low < 0.84 and 0.85 < high <= 1.0  # fitted to the data and the baseline
    assert any(line.get_label() == "majority class" for line in fig.axes[1].get_lines())


# Per-fold scores (5 folds x 2 repeats): the variant's AUC clearly above the logistic's and
# the majority's, its balanced accuracy not distinguishable from theirs; the logistic above
# the majority on both.
FOLDS = {
    "variant": {
        "auc": [0.74, 0.66, 0.72, 0.68, 0.70, 0.73, 0.67, 0.71, 0.69, 0.70],
        "balanced_accuracy": [0.45, 0.60, 0.50, 0.55, 0.48, 0.58, 0.47, 0.56, 0.49, 0.52],
    },
    "logistic": {
        "auc": [0.66, 0.59, 0.63, 0.60, 0.62, 0.66, 0.58, 0.63, 0.61, 0.62],
        "balanced_accuracy": [0.54, 0.56] * 5,
    },
    "majority": {"auc": [0.5] * 10, "balanced_accuracy": [0.5] * 10},
}


def band(folds: list[float]) -> dict:
    return {"mean": float(np.mean(folds)), "sd": float(np.std(folds, ddof=1)), "folds": list(folds)}


def crossval_doc(accuracy=(0.8, 0.02)) -> dict:
    """metrics/crossval/thoracic_bce.json: the variant's folds and the dataset's references."""
    doc = {"dataset": "thoracic", "folds": 5, "repeats": 2, "rows": 399}
    accuracies = {"variant": accuracy, "logistic": (0.84, 0.01), "majority": (0.85, 0.004)}
    for model, scores in FOLDS.items():
        doc[model] = {metric: band(folds) for metric, folds in scores.items()}
        mean, sd = accuracies[model]
        doc[model]["accuracy"] = {"mean": mean, "sd": sd, "folds": [mean] * 10}
    return doc


def test_read_crossval_reads_the_cross_validated_variants_only(tmp_path):
    metrics = write_metrics(tmp_path)
    (metrics / "crossval").mkdir()
    (metrics / "crossval" / "thoracic_bce.json").write_text(json.dumps(crossval_doc()))
    docs = read_crossval(VARIANTS, metrics)
    assert docs == {"thoracic_bce": crossval_doc()}  # baseline has no folds
    assert list(references(docs)) == ["thoracic"]
    assert cv_fields(docs["thoracic_bce"])["cv_auc_sd"] == np.std(FOLDS["variant"]["auc"], ddof=1)
    assert cv_fields(None) == {}


def test_cv_fields_pair_the_variant_with_each_reference_fold_by_fold():
    """The mean per-fold difference and the corrected test's p-value, from the folds."""
    fields = cv_fields(crossval_doc())
    mine, other = FOLDS["variant"]["auc"], FOLDS["logistic"]["auc"]
    test = corrected_ttest(mine, other, 5)
    assert fields["cv_auc_vs_logistic_diff"] == pytest.approx(np.mean(mine) - np.mean(other))
    assert fields["cv_auc_vs_logistic_p"] == test.p < 0.001
    assert fields["cv_balanced_accuracy_vs_majority_p"] > 0.05
    diverged = crossval_doc()
    diverged["variant"]["auc"]["folds"][3] = None
    assert cv_fields(diverged)["cv_auc_vs_logistic_p"] is None


def test_crossval_table_and_words():
    docs = {"thoracic_bce": crossval_doc()}
    frame = collect(metrics_docs(), docs, SECONDS)
    report = to_markdown(frame, references(docs))
    main, cv = report.split("# Cross-validated, against the logistic reference")
    assert "cv_auc" not in main  # the folds have their own table
    assert "Nadeau-Bengio corrected resampled t-test" in cv  # the rule is stated
    assert "*Beats* means Δ > 0 at p < 0.05" in cv
    assert "## thoracic: 5 folds x 2 repeats of 399 rows" in cv and "fashion_mnist" not in cv
    assert "| thoracic_bce | 0.700 ± 0.026 | 0.520 ± 0.050 | 0.800 ± 0.020 | 0.650 |" in cv
    assert "| logistic regression (reference) | 0.620 ± 0.027 |" in cv
    assert "| majority class | 0.500 ± 0.000 | 0.500 ± 0.000 | 0.850 ± 0.004 |" in cv
    (line,) = [w for w in cv.splitlines() if w.startswith("- **thoracic_bce**")]
    assert line.startswith(
        "- **thoracic_bce**: beats the majority baseline: yes (AUC); beats the logistic"
        " reference: yes (AUC)."
    )
    assert "AUC 0.700 ± 0.026 beats the majority baseline (0.500 ± 0.000, Δ +0.200, p " in line
    assert "beats the logistic reference (0.620 ± 0.027, Δ +0.080, p " in line
    assert (
        "balanced accuracy 0.520 ± 0.050 is not distinguishable from the majority baseline"
        " (0.500 ± 0.000, Δ +0.020, p " in line
    )
    (logistic,) = [w for w in cv.splitlines() if w.startswith("- **logistic regression")]
    assert "beats the majority baseline: yes (AUC, balanced accuracy)." in logistic
    assert "logistic reference (" not in logistic  # against the majority only
    one = {"thoracic_bce": {**crossval_doc(), "repeats": 1}}
    assert "## thoracic: 5 folds x 1 repeat of 399 rows" in to_markdown(frame, references(one))


def test_chart_has_error_bars_where_there_are_folds():
    frame = collect(metrics_docs(), {"thoracic_bce": crossval_doc(accuracy=(0.8, 0.05))}, SECONDS)
    panels = chart_panels(frame)
    assert "cv" not in panels["fashion_mnist"]
    assert panels["thoracic"]["cv"] == [0.8] and panels["thoracic"]["cv_sd"] == [0.05]
    fig = last_vs_best_chart(panels)
    fashion, thoracic = fig.axes[:2]
    bars = [c for c in thoracic.containers if c.get_label() == "cross-validated (mean ± sd)"]
    assert len(bars) == 1 and bars[0].errorbar is not None
    (segment,) = bars[0].errorbar.lines[2][0].get_segments()
    assert np.allclose(sorted(segment[:, 0]), [0.75, 0.85])  # mean ± sd
    assert not any(c.get_label().startswith("cross") for c in fashion.containers)
    assert thoracic.get_xlim()[0] < 0.75
