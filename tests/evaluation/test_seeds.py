"""A variant trained with several seeds (its `seeds` field): evaluate scores each seed's
models where study.training.run.seed_trainings puts them, the spread across seeds
(study.evaluation.scoring) checked against statistics and sklearn, and compare's noise
section and error bars (study.reports.seeds, study.reports.chart)."""

from __future__ import annotations

import json
import statistics

import keras
import numpy as np
import pandas as pd
from conftest import thoracic_rows
from sklearn.metrics import accuracy_score, roc_auc_score

from study.config.params import load_params
from study.config.sections import Evaluate
from study.evaluation.evaluate import evaluate_variant, mlflow_metrics
from study.evaluation.scoring import seeds_spread, spread
from study.io.splits import RawInput
from study.reports.chart import chart_panels, last_vs_best_chart
from study.reports.seeds import seed_fields, seeds_markdown, verdict
from study.training.model import build_model, raw_input_model
from study.training.run import seed_trainings

SETTINGS = Evaluate(
    batch_size=64, threshold=0.5, diagnostics={"batch_size": 32, "saturation": 0.99}
)


def test_spread_is_the_mean_and_sample_sd():
    values = [0.81, 0.84, 0.80]
    out = spread(values)
    assert out["mean"] == round(statistics.mean(values), 6)
    assert out["sd"] == round(statistics.stdev(values), 6)  # ddof 1, as the folds' sd
    assert out["values"] == values
    assert spread([0.5]) == {"mean": 0.5, "sd": 0.0, "values": [0.5]}


def test_seeds_spread_per_checkpoint_and_metric_every_run_has():
    runs = {
        43: {
            "last": {"accuracy": 0.8, "loss": None, "diverged": True},
            "best": {"accuracy": 0.9, "loss": 0.3, "auc": 0.7},
        },
        42: {
            "last": {"accuracy": 0.7, "loss": 0.6, "auc": 0.6, "penalty": 0.1},
            "best": {"accuracy": 0.85, "loss": 0.4, "auc": 0.8, "penalty": 0.1},
        },
    }
    out = seeds_spread(runs)
    assert out["seeds"] == [42, 43]
    assert out["last_accuracy"]["values"] == [0.7, 0.8]
    assert out["best_loss"]["mean"] == 0.35
    assert out["best_auc"] == spread([0.8, 0.7])
    assert "last_auc" not in out  # not in every run
    assert "last_loss" not in out  # a diverged seed has none: no mean of the others alone
    assert "best_penalty" not in out  # the first seed's only, as the diagnostics


def test_evaluate_scores_every_seed_where_seed_trainings_puts_it(tmp_path):
    """Three seeds of thoracic_bce (models as built with each seed): metrics' `seeds` spread
    equals sklearn's scores of each seed's saved models; the first seed alone gets the
    diagnostics, MLflow the spread beside the first seed's scores."""
    cfg = load_params().variant("thoracic_bce").model_copy(update={"seeds": 3})
    rows = thoracic_rows(80, 5)
    x, y = rows[:, :-1].astype(np.float32), rows[:, -1].astype(np.int64)
    model_dir = tmp_path / "models" / "thoracic_bce"
    files = (tmp_path / "train.npz", tmp_path / "val.npz")
    jobs = seed_trainings("thoracic_bce", cfg, 7, True, files, model_dir, tmp_path / "h.csv")
    for job in jobs:
        job.out_dir.mkdir(parents=True, exist_ok=True)
        for which, seed in (("best", job.seed), ("last", job.seed + 100)):
            keras.utils.set_random_seed(seed)
            model = build_model(cfg, x.shape[1:])
            as_is = RawInput(shape=x.shape[1:], dtype="float32")  # the rows are the raw input
            raw_input_model(model, as_is).save(job.out_dir / f"{which}.keras")
        summary = {"dataset": "thoracic", "seed": job.seed, "run_id": f"run{job.seed}"}
        summary |= {"model_ids": {}, "best_epoch": 1, "epochs_run": 2, "train_time_s": 1.0}
        summary["config"] = cfg.model_dump(mode="json", exclude_unset=True)
        (job.out_dir / "train.json").write_text(json.dumps(summary))
    first = json.loads((model_dir / "train.json").read_text())
    metrics, evaluations = evaluate_variant(model_dir, first, SETTINGS, (x, y))
    seeds = metrics["seeds"]
    assert seeds["seeds"] == [7, 8, 9] == [e.trained["seed"] for e in evaluations]
    for which in ("last", "best"):
        accuracy, auc = [], []
        for job in jobs:
            model = keras.saving.load_model(job.out_dir / f"{which}.keras")
            prob = model.predict(x, verbose=0)[:, 0]
            accuracy.append(round(accuracy_score(y, prob >= 0.5), 6))
            auc.append(round(roc_auc_score(y, prob), 6))
        assert seeds[f"{which}_accuracy"]["values"] == accuracy
        assert seeds[f"{which}_auc"]["values"] == auc
        assert seeds[f"{which}_auc"]["mean"] == round(statistics.mean(auc), 6)
        assert seeds[f"{which}_auc"]["sd"] == round(statistics.stdev(auc), 6)
        assert metrics[which]["auc"] == auc[0]  # the file's own scores: the first seed's
    assert len(set(seeds["best_auc"]["values"])) == 3  # three different models
    assert "dead_fraction" in metrics["best"] and evaluations[0].activations
    assert "dead_fraction" not in evaluations[1].scores["best"]
    assert evaluations[1].activations == []
    flat = mlflow_metrics(metrics, "best")
    assert flat["seeds_best_auc_mean"] == seeds["best_auc"]["mean"]
    assert flat["seeds_best_accuracy_sd"] == seeds["best_accuracy"]["sd"]
    row = seed_fields(metrics)  # what compare takes from it
    assert row == {
        "seeds": 3,
        "last_accuracy_mean": seeds["last_accuracy"]["mean"],
        "last_accuracy_sd": seeds["last_accuracy"]["sd"],
        "best_accuracy_mean": seeds["best_accuracy"]["mean"],
        "best_accuracy_sd": seeds["best_accuracy"]["sd"],
    }
    assert seed_fields({"last": {}}) == {}  # one seed: no spread


def noisy_frame():
    """Three fashion variants with 3 seeds: b is 0.03 below a (beyond 0.005 + 0.01), c 0.004."""
    rows = []
    for name, mean, sd in (("a", 0.88, 0.005), ("b", 0.85, 0.01), ("c", 0.876, 0.004)):
        rows.append(
            {
                "variant": name,
                "dataset": "fashion_mnist",
                "last_accuracy": mean - 0.01,
                "best_accuracy": mean,
                "seeds": 3,
                "last_accuracy_mean": mean - 0.01,
                "last_accuracy_sd": sd,
                "best_accuracy_mean": mean,
                "best_accuracy_sd": sd,
            }
        )
    return pd.DataFrame(rows)


def test_noise_section_says_which_gaps_exceed_the_seeds_spread():
    frame = noisy_frame()
    top = frame.iloc[0]
    assert verdict(top, top) == "highest mean"
    assert verdict(frame.iloc[1], top).startswith("below a by 0.0300, more than")
    assert verdict(frame.iloc[2], top).startswith("within noise of a: 0.0040 <= sd + sd (0.0090)")
    md = "\n".join(seeds_markdown(frame))
    assert "# Noise across seeds" in md
    assert "| b | 3 | 0.8400 ± 0.0100 | 0.8500 ± 0.0100 | below a" in md
    one_seed = frame.assign(seeds=1)
    assert seeds_markdown(one_seed) == [] and seeds_markdown(frame.drop(columns="seeds")) == []


def test_chart_draws_means_with_sd_bars_when_variants_have_seeds():
    panels = chart_panels(noisy_frame())
    panel = panels["fashion_mnist"]
    assert panel["seeds"] == 3 and panel["best"] == [0.88, 0.85, 0.876]
    assert panel["best_sd"] == [0.005, 0.01, 0.004]
    fig = last_vs_best_chart(panels)
    (bars,) = [c for c in fig.axes[0].containers if c.get_label().startswith("best")]
    assert bars.get_label() == "best checkpoint (mean ± sd, 3 seeds)"
    segments = bars.errorbar.lines[2][0].get_segments()
    assert np.allclose(sorted(segments[1][:, 0]), [0.84, 0.86])  # b: mean ± sd
    mixed = noisy_frame().assign(seeds=[3, 1, 3])  # a variant with one seed: plain bars
    assert "seeds" not in chart_panels(mixed)["fashion_mnist"]
