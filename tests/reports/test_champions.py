"""study.reports.champions: which variant each registered model's aliases point at, chosen on
validation figures only."""

from __future__ import annotations

from study.reports.champions import choose, to_markdown

FM = {"dataset": "fashion_mnist"}


def doc(dataset: str, val_accuracy: float, test_accuracy: float) -> dict:
    """metrics/<variant>.json as evaluate writes it (the fields choose reads, and test's)."""
    test = {"accuracy": test_accuracy, "loss": 0.3}
    return {"dataset": dataset, "best_val_accuracy": val_accuracy, "best": test, "last": test}


def cv(auc_mean: float | None) -> dict:
    return {"variant": {"auc": {"mean": auc_mean}}}


def test_the_champion_is_the_best_on_validation_not_on_test():
    metrics = {
        "a": doc("fashion_mnist", val_accuracy=0.91, test_accuracy=0.80),
        "b": doc("fashion_mnist", val_accuracy=0.90, test_accuracy=0.95),
        "searched": doc("fashion_mnist", val_accuracy=0.99, test_accuracy=0.99),
    }
    champion, challenger = choose(metrics, {}, ["a", "b"], "searched")
    assert champion == {**FM, "alias": "champion", "variant": "a", "best_val_accuracy": 0.91}
    assert challenger == {
        **FM,
        "alias": "challenger",
        "variant": "searched",
        "best_val_accuracy": 0.99,
    }


def test_a_cross_validated_dataset_competes_on_its_cross_validated_auc():
    """Thoracic variants compare by the mean AUC over the folds of the non-test rows, not by
    the accuracy of a 20 % validation split; a diverged one (AUC null) is left out."""
    metrics = {
        "bce": doc("thoracic", val_accuracy=0.86, test_accuracy=0.85),
        "mse": doc("thoracic", val_accuracy=0.80, test_accuracy=0.70),
        "nan": doc("thoracic", val_accuracy=0.99, test_accuracy=0.99),
        "fm": doc("fashion_mnist", val_accuracy=0.9, test_accuracy=0.9),
    }
    crossval = {"bce": cv(0.60), "mse": cv(0.64), "nan": cv(None)}
    rows = choose(metrics, crossval, ["bce", "mse", "nan", "fm"], "searched")  # none searched
    assert rows == [
        {"alias": "champion", "dataset": "thoracic", "variant": "mse", "cv_auc_mean": 0.64},
        {**FM, "alias": "champion", "variant": "fm", "best_val_accuracy": 0.9},
    ]


def test_a_tie_goes_to_the_first_listed_variant():
    metrics = {n: doc("fashion_mnist", 0.9, t) for n, t in (("x", 0.1), ("y", 0.9), ("z", 0.5))}
    (row,) = choose(metrics, {}, ["y", "x", "z"], "searched")
    assert row["variant"] == "y"


TIE = """
import json
from study.reports.champions import choose
metrics = {n: {"dataset": "thoracic", "best_val_accuracy": v} for n, v in
           (("a", 0.95), ("b", 0.9), ("c", 0.7), ("d", 0.6))}
crossval = {"c": {"variant": {"auc": {"mean": 0.8}}}, "d": {"variant": {"auc": {"mean": 0.7}}}}
print(json.dumps(choose(metrics, crossval, ["a", "b", "c", "d"], "none")))
"""


def test_a_tie_of_criteria_goes_to_the_cross_validated_auc_whatever_the_hash_seed():
    """Two variants with a cross-validated AUC, two without: the criterion is the
    cross-validated AUC in every process (a set's order, which decided before, changes with
    PYTHONHASHSEED)."""
    import json
    import os
    import subprocess
    import sys

    from study.config.paths import REPO_ROOT

    rows = set()
    for seed in range(6):
        env = {**os.environ, "PYTHONHASHSEED": str(seed)}
        out = subprocess.run(
            [sys.executable, "-c", TIE], env=env, cwd=REPO_ROOT, capture_output=True, check=True
        )
        rows.add(out.stdout.decode())
    (only,) = rows
    assert json.loads(only) == [
        {"alias": "champion", "dataset": "thoracic", "variant": "c", "cv_auc_mean": 0.8}
    ]


def test_the_report_names_the_model_alias_variant_and_its_validation_figure():
    rows = [{"alias": "champion", "dataset": "thoracic", "variant": "mse", "cv_auc_mean": 0.64}]
    lines = to_markdown(rows, {"thoracic": "exp-thoracic"})
    assert lines[-1] == "| exp-thoracic | champion | mse | cv_auc_mean 0.6400 |"
    assert to_markdown([], {}) == []
