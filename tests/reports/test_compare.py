"""stages.compare: the table and chart of last vs best per variant."""

from __future__ import annotations

import json
import shutil

import numpy as np
import yaml
from conftest import dvc

from stages.compare import (
    PLOT_COLUMNS,
    chart_panels,
    collect,
    last_vs_best_chart,
    plot_chart,
    to_markdown,
    write_plot_csv,
)
from stages.cvreport import read_references, relation
from stages.params import REPO_ROOT


def write_fixture(tmp_path):
    metrics, models = tmp_path / "metrics", tmp_path / "models"
    metrics.mkdir()
    runs = {
        "baseline": ({"loss": 0.5, "accuracy": 0.80}, {"loss": 0.45, "accuracy": 0.83}, None),
        "thoracic_bce": (
            {"loss": 0.4, "accuracy": 0.85, "auc": 0.6, "balanced_accuracy": 0.5},
            {"loss": 0.39, "accuracy": 0.84, "auc": 0.65, "balanced_accuracy": 0.52},
            0.85,
        ),
    }
    for name, (last, best, majority) in runs.items():
        doc = {"last": last, "best": best, "best_epoch": 4, "epochs_run": 9}
        if majority is not None:
            doc["majority_accuracy"] = majority
        (metrics / f"{name}.json").write_text(json.dumps(doc))
        (models / name).mkdir(parents=True)
        (models / name / "train.json").write_text(json.dumps({"train_time_s": 1.5}))
    return metrics, models


def test_collect_and_markdown(tmp_path):
    metrics, models = write_fixture(tmp_path)
    frame = collect({"baseline": "fashion_mnist", "thoracic_bce": "thoracic"}, metrics, models)
    row = frame.set_index("variant").loc["baseline"]
    assert row["gain_best_vs_last"] == 0.03 and row["epochs_run"] == 9
    assert frame.set_index("variant").loc["thoracic_bce", "best_auc"] == 0.65
    md = to_markdown(frame)
    assert "## fashion_mnist" in md and "## thoracic" in md
    assert "| baseline | fashion_mnist | 0.8000 | 0.8300 |" in md
    assert "majority_accuracy" in md.split("## thoracic")[1]
    assert "majority_accuracy" not in md.split("## thoracic")[0]  # empty columns dropped


def test_chart_is_a_png(tmp_path):
    metrics, models = write_fixture(tmp_path)
    frame = collect({"baseline": "fashion_mnist", "thoracic_bce": "thoracic"}, metrics, models)
    plot_chart(frame, tmp_path / "c.png", dpi=50)
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def last_vs_best_plot() -> dict:
    plots = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["plots"]
    (plot,) = (p["last_vs_best"] for p in plots if "last_vs_best" in p)
    return plot


def test_plot_csv_has_one_row_per_variant_with_last_and_best_side_by_side(tmp_path):
    metrics, models = write_fixture(tmp_path)
    frame = collect({"baseline": "fashion_mnist", "thoracic_bce": "thoracic"}, metrics, models)
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
    metrics, models = write_fixture(tmp_path)
    frame = collect({"baseline": "fashion_mnist", "thoracic_bce": "thoracic"}, metrics, models)
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


def test_penalty_and_activation_diagnostics_in_the_report(tmp_path):
    metrics, models = write_fixture(tmp_path)
    doc = json.loads((metrics / "thoracic_bce.json").read_text())
    for which, dead in (("last", 0.25), ("best", 0.125)):
        doc[which] |= {"penalty": 0.1, "dead_fraction": dead, "first_layer_grad_norm": 2.0}
    (metrics / "thoracic_bce.json").write_text(json.dumps(doc))
    frame = collect({"baseline": "fashion_mnist", "thoracic_bce": "thoracic"}, metrics, models)
    report = to_markdown(frame)
    main, diagnostics = report.split("# Activation diagnostics on the test split")
    assert "best_penalty" in main and "dead_fraction" not in main
    assert "| thoracic_bce | thoracic | 0.2500 | 0.1250 | 2.0000 | 2.0000 |" in diagnostics
    assert "baseline" not in diagnostics  # no hidden layers, no diagnostics


def test_chart_panels_per_dataset_with_the_majority_baseline(tmp_path):
    metrics, models = write_fixture(tmp_path)
    frame = collect({"baseline": "fashion_mnist", "thoracic_bce": "thoracic"}, metrics, models)
    panels = chart_panels(frame)
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


def add_folds(metrics, auc=(0.7, 0.03), accuracy=(0.8, 0.02)):
    """thoracic_bce with cross-validated scores, and the thoracic dataset's reference."""
    doc = json.loads((metrics / "thoracic_bce.json").read_text())
    doc["cv"] = {
        "auc": {"mean": auc[0], "sd": auc[1]},
        "balanced_accuracy": {"mean": 0.52, "sd": 0.05},
        "accuracy": {"mean": accuracy[0], "sd": accuracy[1]},
        "folds": 5,
        "repeats": 2,
    }
    (metrics / "thoracic_bce.json").write_text(json.dumps(doc))
    ref = {
        "folds": 5,
        "repeats": 2,
        "rows": 399,
        "logistic": {
            "auc": {"mean": 0.62, "sd": 0.04},
            "balanced_accuracy": {"mean": 0.55, "sd": 0.02},
            "accuracy": {"mean": 0.84, "sd": 0.01},
        },
        "majority": {
            "auc": {"mean": 0.5, "sd": 0.0},
            "balanced_accuracy": {"mean": 0.5, "sd": 0.0},
            "accuracy": {"mean": 0.85, "sd": 0.004},
        },
    }
    (metrics / "reference").mkdir()
    (metrics / "reference" / "thoracic.json").write_text(json.dumps(ref))


def test_crossval_table_and_words(tmp_path):
    metrics, models = write_fixture(tmp_path)
    add_folds(metrics)
    variants = {"baseline": "fashion_mnist", "thoracic_bce": "thoracic"}
    frame = collect(variants, metrics, models)
    references = read_references(list(variants.values()), metrics)
    assert list(references) == ["thoracic"]  # fashion_mnist has none
    report = to_markdown(frame, references)
    main, cv = report.split("# Cross-validated, against the logistic reference")
    assert "cv_auc" not in main  # the folds have their own table
    assert "## thoracic: 5 folds x 2 repeats of 399 rows" in cv and "fashion_mnist" not in cv
    assert "| thoracic_bce | 0.700 ± 0.030 | 0.520 ± 0.050 | 0.800 ± 0.020 | 0.650 |" in cv
    assert "| logistic regression (reference) | 0.620 ± 0.040 |" in cv
    assert "| majority class | 0.500 ± 0.000 | 0.500 ± 0.000 | 0.850 ± 0.004 |" in cv
    (line,) = [w for w in cv.splitlines() if w.startswith("- **thoracic_bce**")]
    assert line.startswith(
        "- **thoracic_bce**: beats the majority baseline: yes (AUC); beats the logistic"
        " reference: yes (AUC)."
    )
    # AUC 0.70 - 0.03 > 0.62 + 0.04; balanced accuracy 0.52 ± 0.05 overlaps both bands
    assert "AUC 0.700 ± 0.030 beats the majority baseline (0.500 ± 0.000)" in line
    assert "balanced accuracy 0.520 ± 0.050 is within one sd of the majority baseline" in line
    (logistic,) = [w for w in cv.splitlines() if w.startswith("- **logistic regression")]
    assert "beats the majority baseline: yes (AUC, balanced accuracy)." in logistic
    assert "logistic reference (" not in logistic  # against the majority only


def test_relation_is_about_one_sd_bands():
    assert relation((0.70, 0.03), (0.62, 0.04)) == "beats"
    assert relation((0.65, 0.03), (0.62, 0.04)) == "is within one sd of"
    assert relation((0.50, 0.01), (0.62, 0.04)) == "is below"
    assert relation((0.52, 0.0), (0.5, 0.0)) == "beats"  # the majority's AUC has no spread


def test_chart_has_error_bars_where_there_are_folds(tmp_path):
    metrics, models = write_fixture(tmp_path)
    add_folds(metrics, accuracy=(0.8, 0.05))
    frame = collect({"baseline": "fashion_mnist", "thoracic_bce": "thoracic"}, metrics, models)
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
