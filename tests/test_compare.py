"""stages.compare: the table and chart of last vs best per variant."""

from __future__ import annotations

import json

from stages.compare import collect, plot_chart, to_markdown


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
