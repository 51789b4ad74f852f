"""Which variant each dataset's registered model points at, chosen on validation figures only
(the test split is for reporting).

Per dataset every candidate competes: the study's variants and the searched variant. A
candidate must beat the dataset's reference on the same rows:
- cross-validated dataset (metrics/crossval/): its cross-validated variants compete on the
  mean AUC over the folds, against the logistic reference on the same folds, paired fold by
  fold (study.reports.paired: Δ > 0 at p < ALPHA);
- otherwise: its variants compete on val_accuracy at their best epoch, against its softmax
  regression (the listed variants with no hidden layer, a multinomial logistic regression,
  the best of them) on the same validation rows: Δ > 0 (no test: the per-row predictions a
  paired test needs are not kept; the report prints Δ).
`champion` is the best candidate that beats the reference, `challenger` the next one; on
equal figures the earlier in the study's order (params.yaml's variants, then the searched
variant) ranks first. No candidate beating the reference: no champion, and the report says
why."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from study.reports.crossval import paired, references
from study.reports.paired import ALPHA, relation
from study.tracking.registry import ALIASES

LABELS = {"cv_auc_mean": "cv AUC", "best_val_accuracy": "val accuracy"}
CROSS_VALIDATED = ("cv_auc_mean",)  # the criteria judged by the paired test over the folds


class Candidate(NamedTuple):
    """A variant's validation figure and how it stands to the reference: diff = its figure -
    the reference's (cross-validated: the mean per-fold difference), p the paired test's
    p-value (None without a test), beats whether it passes the reference rule."""

    variant: str
    value: float
    diff: float | None
    p: float | None
    beats: bool


@dataclass(frozen=True)
class Choice:
    """One dataset's candidates, best first, on `criterion` against `reference` (a label with
    its figure; None: the dataset has none)."""

    dataset: str
    criterion: str
    reference: str | None
    ranked: list[Candidate]

    @property
    def chosen(self) -> list[Candidate]:
        """The candidates that beat the reference, best first: champion, challenger."""
        return [c for c in self.ranked if c.beats][: len(ALIASES)]

    def rows(self) -> list[dict[str, Any]]:
        """One row per alias: alias, dataset, criterion, reference and its Candidate's fields."""
        return [
            {"alias": alias, "dataset": self.dataset, "criterion": self.criterion}
            | {"reference": self.reference, **c._asdict()}
            for alias, c in zip(ALIASES, self.chosen, strict=False)
        ]

    def note(self) -> str | None:
        """Why the dataset lacks a champion or a challenger (None when it has both)."""
        label, chosen = LABELS[self.criterion], self.chosen
        if len(chosen) == len(ALIASES):
            return None
        if self.reference is None:
            return (
                f"{self.dataset}: no champion: no reference to beat (not cross-validated, and"
                " no variant without hidden layers)"
            )
        if not self.ranked:
            return f"{self.dataset}: no champion: no candidate has a {label}"
        if chosen:
            return f"{self.dataset}: no challenger: no other candidate beats {self.reference}"
        best = self.ranked[0]
        is_paired = self.criterion in CROSS_VALIDATED
        rule = f"paired, p < {ALPHA} on {label}" if is_paired else f"a higher {label}, same rows"
        return (
            f"{self.dataset}: no champion: no candidate beats {self.reference} ({rule}); best"
            f" was {best.variant} ({label} {best.value:.4f}), {_versus(best)}"
        )


def choose(
    metrics: dict[str, dict[str, Any]],
    crossval: dict[str, dict[str, Any]],
    listed: list[str],
    searched: str,
    linear: list[str],
) -> list[Choice]:
    """Per dataset of the listed variants (in their order), its candidates ranked on
    validation against its reference (see the module docstring). `crossval`: the crossval
    files of the cross-validated variants; `linear`: the listed variants with no hidden
    layer (a non-cross-validated dataset's reference)."""
    order = [*listed, searched] if searched in metrics else list(listed)
    by_dataset: dict[str, list[str]] = {}
    for name in order:
        by_dataset.setdefault(metrics[name]["dataset"], []).append(name)
    refs = references({n: d for n, d in crossval.items() if n in order})
    choices = []
    for dataset, names in by_dataset.items():
        if dataset in refs:
            choice = _cross_validated(dataset, names, crossval, refs[dataset])
        else:
            choice = _on_validation(dataset, names, metrics, linear)
        ranked = sorted(choice.ranked, key=lambda c: (-c.value, names.index(c.variant)))
        choices.append(Choice(dataset, choice.criterion, choice.reference, ranked))
    return choices


def _cross_validated(
    dataset: str, names: list[str], crossval: dict[str, dict[str, Any]], ref: dict[str, Any]
) -> Choice:
    """The cross-validated variants on their mean AUC, each paired with the logistic
    reference over the folds; a diverged one (no AUC) is no candidate."""
    candidates = []
    for name in names:
        doc = crossval.get(name)
        if doc is None or doc["variant"]["auc"]["mean"] is None:
            continue
        test = paired(doc, "variant", "logistic", "auc")
        diff, p = (None, None) if test is None else (test.mean, test.p)
        beats = relation(diff, p) == "beats"
        candidates.append(Candidate(name, doc["variant"]["auc"]["mean"], diff, p, beats))
    reference = f"the logistic reference (cv AUC {ref['logistic']['auc']['mean']:.4f})"
    return Choice(dataset, "cv_auc_mean", reference, candidates)


def _on_validation(
    dataset: str, names: list[str], metrics: dict[str, dict[str, Any]], linear: list[str]
) -> Choice:
    """The variants with hidden layers (and the searched one) on val_accuracy at their best
    epoch against the best variant without: Δ > 0 on the same validation rows."""
    refs = [n for n in names if n in linear]
    if not refs:
        return Choice(dataset, "best_val_accuracy", None, [])
    ref = max(refs, key=lambda n: (metrics[n]["best_val_accuracy"], -refs.index(n)))
    figure = metrics[ref]["best_val_accuracy"]
    candidates = []
    for name in names:
        value = metrics[name]["best_val_accuracy"]
        if name not in refs and value is not None:
            candidates.append(Candidate(name, value, value - figure, None, value > figure))
    reference = f"{ref}, the softmax regression (val accuracy {figure:.4f})"
    return Choice(dataset, "best_val_accuracy", reference, candidates)


def _versus(c: Candidate) -> str:
    if c.diff is None:
        return "cannot be compared (a fold diverged)"
    return f"Δ {c.diff:+.4f}" + ("" if c.p is None else f", p {c.p:.3g}")


RULE = (
    "Per dataset, every candidate competes on validation figures only (the test split is for"
    " reporting): the study's variants and the searched variant. A candidate must beat the"
    " dataset's reference on the same rows: where the dataset is cross-validated, its"
    " cross-validated variants on the mean AUC over the folds of the non-test rows, against"
    " the logistic reference paired fold by fold (Δ > 0 at p < {alpha}, the corrected"
    " resampled t-test); elsewhere, on val_accuracy at the best epoch, against the dataset's"
    " softmax regression (its best variant without hidden layers) on the same validation rows"
    " (Δ > 0; no test). `champion` is the best candidate that beats the reference,"
    " `challenger` the next; on equal figures the earlier in params.yaml's variants (the"
    " searched variant last) ranks first. Each alias points at that variant's best"
    ' checkpoint: `mlflow.keras.load_model("models:/<model>@champion")`. Only a run of the'
    " study in the workspace (`dvc repro`) moves an alias; an experiment registers versions"
    " tagged with its name."
)


def to_markdown(choices: list[Choice], names: dict[str, str]) -> list[str]:
    """compare.md's section on the registered models (names: dataset -> registered model):
    the rule, one row per alias, and why a dataset lacks a champion or a challenger."""
    if not choices:
        return []
    parts = ["\n# Registered models, chosen on validation\n", RULE.format(alpha=ALPHA)]
    if any(c.rows() for c in choices):  # a table with no row is no table
        parts += ["", "| model | alias | variant | validation figure | against the reference |"]
        parts.append("|---|---|---|---|---|")
    for choice in choices:
        for r in choice.rows():
            figure = f"{LABELS[r['criterion']]} {r['value']:.4f}"
            versus = (
                f"{r['reference']}: {_versus(Candidate(**{k: r[k] for k in Candidate._fields}))}"
            )
            cells = [names[r["dataset"]], r["alias"], r["variant"], figure, versus]
            parts.append("| " + " | ".join(cells) + " |")
    notes = [f"- {n}." for n in (c.note() for c in choices) if n]
    return parts + (["", *notes] if notes else [])
