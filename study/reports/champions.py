"""Which variant each dataset's registered model points at, chosen on validation figures
only (the test split is for reporting): `champion`, the best of the study's variants, and
`challenger`, the searched variant."""

from __future__ import annotations

from typing import Any


def validation_score(name: str, metrics: dict[str, Any], crossval: dict[str, Any]) -> tuple:
    """(criterion, value) a variant competes on: its cross-validated AUC (mean over the folds
    of the non-test rows) when it has one, else its best epoch's val_accuracy."""
    if name in crossval and crossval[name]["variant"]["auc"]["mean"] is not None:
        return "cv_auc_mean", crossval[name]["variant"]["auc"]["mean"]
    return "best_val_accuracy", metrics[name]["best_val_accuracy"]


def choose(
    metrics: dict[str, dict[str, Any]],
    crossval: dict[str, dict[str, Any]],
    listed: list[str],
    searched: str,
) -> list[dict[str, Any]]:
    """Per dataset of the listed variants, its champion: the highest validation score, on the
    criterion most of them have (cross-validated AUC where the dataset is cross-validated);
    and the searched variant as its dataset's challenger. One row per alias."""
    rows = []
    by_dataset: dict[str, list[str]] = {}
    for name in listed:
        by_dataset.setdefault(metrics[name]["dataset"], []).append(name)
    for dataset, names in by_dataset.items():
        scored = {n: validation_score(n, metrics, crossval) for n in names}
        criteria = [criterion for criterion, _ in scored.values()]
        criterion = max(set(criteria), key=criteria.count)
        values = {n: v for n, (c, v) in scored.items() if c == criterion and v is not None}
        if not values:
            continue
        best = max(values, key=lambda n: (values[n], -names.index(n)))  # first on a tie
        rows.append(row("champion", dataset, best, criterion, values[best]))
    if searched in metrics:
        criterion, value = validation_score(searched, metrics, crossval)
        rows.append(row("challenger", metrics[searched]["dataset"], searched, criterion, value))
    return rows


def row(alias: str, dataset: str, variant: str, criterion: str, value: float) -> dict[str, Any]:
    return {"alias": alias, "dataset": dataset, "variant": variant, criterion: value}


def to_markdown(rows: list[dict[str, Any]], names: dict[str, str]) -> list[str]:
    """compare.md's section on the registered models (names: dataset -> registered model)."""
    if not rows:
        return []
    parts = [
        "\n# Registered models, chosen on validation\n",
        "Per dataset, `champion` is the variant with the best validation figure (cross-"
        "validated AUC over the non-test rows where the dataset is cross-validated, else"
        " val_accuracy at the best epoch); `challenger` is the searched variant. Each alias"
        " points at that variant's best checkpoint: `mlflow.keras.load_model("
        '"models:/<model>@champion")`.\n',
        "| model | alias | variant | validation figure |",
        "|---|---|---|---|",
    ]
    for r in rows:
        criterion = next(k for k in r if k not in ("alias", "dataset", "variant", "version"))
        figure = f"{criterion} {r[criterion]:.4f}"
        parts.append(f"| {names[r['dataset']]} | {r['alias']} | {r['variant']} | {figure} |")
    return parts
