"""stages.seeds, stages.scoring's spread and compare's noise section: a variant trained with
several seeds, each seed's models scored, mean and sd checked against numpy and sklearn."""

from __future__ import annotations

import json
import statistics

import numpy as np
import pandas as pd
from conftest import thoracic_rows

from stages.compare import chart_panels, last_vs_best_chart
from stages.evaluate import seed_scores
from stages.params import SEEDS_FILE, resolve_variant, seed_dir
from stages.scoring import seeds_spread, spread
from stages.seedreport import seeds_markdown, verdict
from stages.seeds import extra_seeds
from stages.train import configure_tf, train_model

EVAL = {"batch_size": 64, "threshold": 0.5, "diagnostics": {"batch_size": 32, "saturation": 0.99}}


def test_extra_seeds_follow_the_main_seed():
    assert extra_seeds(42, 1) == []
    assert extra_seeds(42, 3) == [43, 44]


def test_spread_is_the_mean_and_sample_sd():
    values = [0.81, 0.84, 0.80]
    out = spread(values)
    assert out["mean"] == round(statistics.mean(values), 6)
    assert out["sd"] == round(statistics.stdev(values), 6)  # ddof 1, as the CV's sd
    assert out["values"] == values
    assert spread([0.5]) == {"mean": 0.5, "sd": 0.0, "values": [0.5]}


def test_seeds_spread_per_checkpoint_and_metric_every_run_has():
    runs = {
        43: {"last": {"accuracy": 0.8, "loss": 0.5}, "best": {"accuracy": 0.9, "loss": 0.3}},
        42: {
            "last": {"accuracy": 0.7, "loss": 0.6, "auc": 0.6, "penalty": 0.1},
            "best": {"accuracy": 0.85, "loss": 0.4},
        },
    }
    out = seeds_spread(runs)
    assert out["seeds"] == [42, 43]
    assert out["last_accuracy"]["values"] == [0.7, 0.8]
    assert out["best_loss"]["mean"] == 0.35
    assert "last_auc" not in out and "last_penalty" not in out  # not in every run / no spread


def test_seed_scores_match_sklearn_on_each_seeds_saved_models(params, tmp_path):
    """evaluate's scores of the seeds stage's models equal an independent computation:
    sklearn's accuracy of each saved model's predictions."""
    import keras
    from sklearn.metrics import accuracy_score

    cfg = {**resolve_variant(params, "thoracic_bce"), "epochs": 2}
    rows = thoracic_rows(160, 5)
    x, y = rows[:, :-1].astype(np.float32), rows[:, -1].astype(np.int64)
    train, val, test = (x[:100], y[:100]), (x[100:130], y[100:130]), (x[130:], y[130:])
    seeds_dir = tmp_path / "seeds"
    for seed in (43, 44):
        configure_tf(seed, deterministic=True, threads=1)
        where = seed_dir(seeds_dir, seed)
        result = train_model(cfg, train, val, where, tmp_path / f"work{seed}")
        summary = {k: cfg[k] for k in ("dataset", "loss", "depth", "activation")}
        summary |= {"seed": seed, "run_id": "r", "model_ids": {}, "epochs_run": 2}
        summary["best_epoch"] = result.best_epoch
        (where / "train.json").write_text(json.dumps(summary))
    (seeds_dir / SEEDS_FILE).write_text(json.dumps({"seeds": [43, 44]}))
    scores = seed_scores(seeds_dir, "thoracic_bce", EVAL, test)
    assert list(scores) == [43, 44]
    for seed, (trained, by_model) in scores.items():
        assert trained["seed"] == seed
        for which in ("last", "best"):
            model = keras.saving.load_model(seed_dir(seeds_dir, seed) / f"{which}.keras")
            pred = (model.predict(test[0], verbose=0)[:, 0] >= 0.5).astype(int)
            assert by_model[which]["accuracy"] == round(accuracy_score(test[1], pred), 6)


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
