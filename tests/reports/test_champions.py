"""study.reports.champions: which variant each registered model's aliases point at, chosen on
validation figures only, among every candidate (the searched variant too), against the
dataset's reference on the same rows."""

from __future__ import annotations

from study.reports.champions import choose, to_markdown
from study.reports.paired import corrected_ttest

FOLDS = 5
# The logistic reference's AUC on each of the 5 folds.
LOGISTIC = [0.60, 0.65, 0.62, 0.66, 0.63]


def doc(dataset: str, val_accuracy: float, test_accuracy: float) -> dict:
    """metrics/<variant>.json as evaluate writes it (the fields choose reads, and test's)."""
    test = {"accuracy": test_accuracy, "loss": 0.3}
    return {"dataset": dataset, "best_val_accuracy": val_accuracy, "best": test, "last": test}


def cv(dataset: str, aucs: list[float] | None, logistic: list[float] = LOGISTIC) -> dict:
    """metrics/crossval/<variant>.json with per-fold AUCs (None: a fold diverged)."""

    def scores(folds):
        mean = None if folds is None else sum(folds) / len(folds)
        return {"auc": {"mean": mean, "sd": 0.0, "folds": folds or [None] * FOLDS}}

    return {
        "dataset": dataset,
        "folds": FOLDS,
        "repeats": 1,
        "rows": 100,
        "variant": scores(aucs),
        "logistic": scores(logistic),
        "majority": scores([0.5] * FOLDS),
    }


def shifted(by: float) -> list[float]:
    """The logistic reference's folds shifted by `by`, with a little noise."""
    return [a + by + n for a, n in zip(LOGISTIC, (0.01, -0.01, 0.0, 0.005, -0.005), strict=True)]


def by_alias(choices) -> dict[tuple[str, str], str]:
    return {(r["dataset"], r["alias"]): r["variant"] for c in choices for r in c.rows()}


def test_the_searched_variant_can_be_champion_and_the_runner_up_is_challenger():
    """The issue's case: act_sigmoid (0.8910) was champion while searched (0.9098) was only
    challenger. Every candidate competes; the test figures play no part."""
    metrics = {
        "baseline": doc("fashion_mnist", 0.8545, 0.99),  # the reference: no hidden layer
        "act_relu": doc("fashion_mnist", 0.8810, 0.99),
        "act_sigmoid": doc("fashion_mnist", 0.8910, 0.80),
        "searched": doc("fashion_mnist", 0.9098, 0.70),
    }
    (choice,) = choose(
        metrics, {}, ["baseline", "act_relu", "act_sigmoid"], "searched", ["baseline"]
    )
    champion, challenger = choice.rows()
    assert (champion["variant"], champion["value"]) == ("searched", 0.9098)
    assert champion["diff"] == 0.9098 - 0.8545 and champion["p"] is None
    assert (challenger["alias"], challenger["variant"]) == ("challenger", "act_sigmoid")
    assert [c.variant for c in choice.ranked] == ["searched", "act_sigmoid", "act_relu"]
    assert choice.note() is None


def test_a_reference_that_beats_every_candidate_leaves_no_champion_and_the_report_says_why():
    """The issue's thoracic case: the best network's cv AUC is below the logistic
    reference's on the same folds; no alias, and the report names the best and its test."""
    metrics = {n: doc("thoracic", 0.85, 0.85) for n in ("cce", "bce")}
    crossval = {"cce": cv("thoracic", shifted(-0.06)), "bce": cv("thoracic", shifted(-0.08))}
    (choice,) = choose(metrics, crossval, ["cce", "bce"], "searched", [])
    assert choice.rows() == []
    test = corrected_ttest(shifted(-0.06), LOGISTIC, FOLDS)
    note = choice.note()
    assert note.startswith("thoracic: no champion: no candidate beats the logistic reference")
    assert "(paired, p < 0.05 on cv AUC)" in note and "best was cce" in note
    assert f"Δ {test.mean:+.4f}, p {test.p:.3g}" in note
    lines = to_markdown([choice], {"thoracic": "exp-thoracic"})
    assert "| exp-thoracic |" not in "\n".join(lines)
    assert lines[-1] == f"- {note}."


def test_a_cross_validated_candidate_must_beat_the_logistic_reference_paired():
    """Above the reference in mean but not significantly: no champion; significantly above:
    champion; a diverged fold (no paired test) and a variant without folds cannot be."""
    metrics = {n: doc("thoracic", 0.85, 0.85) for n in ("noisy", "good", "nan", "plain")}
    noisy = [a + d for a, d in zip(LOGISTIC, (0.2, -0.15, 0.1, -0.1, 0.02), strict=True)]
    crossval = {
        "noisy": cv("thoracic", noisy),
        "good": cv("thoracic", shifted(0.03)),
        "nan": cv("thoracic", None),
    }
    (choice,) = choose(metrics, crossval, ["noisy", "good", "nan", "plain"], "s", [])
    (champion,) = choice.rows()
    assert champion["variant"] == "good" and champion["p"] < 0.05
    assert champion["criterion"] == "cv_auc_mean"
    assert [c.variant for c in choice.ranked] == ["good", "noisy"]
    assert choice.note() == (
        "thoracic: no challenger: no other candidate beats the logistic reference"
        f" (cv AUC {sum(LOGISTIC) / FOLDS:.4f})"
    )


def test_without_cross_validation_a_candidate_must_beat_the_softmax_regression():
    metrics = {
        "linear": doc("fashion_mnist", 0.90, 0.5),
        "linear2": doc("fashion_mnist", 0.85, 0.5),
        "mlp": doc("fashion_mnist", 0.89, 0.99),
        "searched": doc("fashion_mnist", 0.90, 0.99),  # a tie with the reference: no win
    }
    listed = ["linear", "linear2", "mlp"]
    (choice,) = choose(metrics, {}, listed, "searched", ["linear", "linear2"])
    assert choice.rows() == []
    assert choice.reference == "linear, the softmax regression (val accuracy 0.9000)"
    assert "best was searched (val accuracy 0.9000), Δ +0.0000" in choice.note()
    (alone,) = choose({"mlp": metrics["mlp"]}, {}, ["mlp"], "searched", [])
    assert alone.note() == (
        "fashion_mnist: no champion: no reference to beat (not cross-validated, and no"
        " variant without hidden layers)"
    )


def test_a_tie_goes_to_the_earlier_variant_in_the_study_order():
    """Equal validation figures: params.yaml's order, the searched variant last."""
    metrics = {n: doc("fashion_mnist", 0.9, t) for n, t in (("x", 0.1), ("y", 0.9), ("z", 0.5))}
    metrics |= {"ref": doc("fashion_mnist", 0.5, 0.5), "searched": doc("fashion_mnist", 0.9, 1)}
    (choice,) = choose(metrics, {}, ["ref", "y", "x", "z"], "searched", ["ref"])
    assert by_alias([choice]) == {
        ("fashion_mnist", "champion"): "y",
        ("fashion_mnist", "challenger"): "x",
    }
    assert [c.variant for c in choice.ranked] == ["y", "x", "z", "searched"]


TIE = """
import json
from study.reports.champions import choose
from test_champions import cv, doc, shifted
metrics = {n: doc("thoracic", v, v) for n, v in (("a", 0.95), ("b", 0.9), ("c", 0.7), ("d", 0.6))}
crossval = {"c": cv("thoracic", shifted(0.05)), "d": cv("thoracic", shifted(0.05))}
print(json.dumps([c.rows() for c in choose(metrics, crossval, list(metrics), "none", [])]))
"""


def test_the_choice_is_the_same_whatever_the_hash_seed():
    """Two cross-validated variants with equal figures, two without folds: the same rows in
    every process (a set's order, which decided once, changes with PYTHONHASHSEED)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from study.config.paths import REPO_ROOT

    rows = set()
    for seed in range(3):
        env = {**os.environ, "PYTHONHASHSEED": str(seed)}
        env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), str(REPO_ROOT)])
        out = subprocess.run(
            [sys.executable, "-c", TIE], env=env, cwd=REPO_ROOT, capture_output=True, check=True
        )
        rows.add(out.stdout.decode())
    (only,) = rows
    [[champion, challenger]] = json.loads(only)
    assert (champion["variant"], challenger["variant"]) == ("c", "d")


def test_the_report_names_the_model_alias_variant_figure_and_the_reference():
    metrics = {"ref": doc("fashion_mnist", 0.8, 0.8), "mlp": doc("fashion_mnist", 0.85, 0.8)}
    choices = choose(metrics, {}, ["ref", "mlp"], "searched", ["ref"])
    lines = to_markdown(choices, {"fashion_mnist": "exp-fashion_mnist"})
    assert lines[-3] == (
        "| exp-fashion_mnist | champion | mlp | val accuracy 0.8500 | ref, the softmax"
        " regression (val accuracy 0.8000): Δ +0.0500 |"
    )
    assert lines[-1] == (
        "- fashion_mnist: no challenger: no other candidate beats ref, the softmax regression"
        " (val accuracy 0.8000)."
    )
    assert to_markdown([], {}) == []
