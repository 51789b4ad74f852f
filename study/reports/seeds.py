"""compare's part on the noise across seeds (variants with `seeds` > 1): per variant the mean and sd
of its last and best test accuracy over its seeds, and in words whether its gap to the best
variant of its dataset is larger than that noise."""

from __future__ import annotations

from typing import Any

import pandas as pd

# compare's columns from metrics/<variant>.json's `seeds` (study.evaluation.scoring.seeds_spread).
SEED_COLUMNS = (
    "seeds",
    "last_accuracy_mean",
    "last_accuracy_sd",
    "best_accuracy_mean",
    "best_accuracy_sd",
)


def seed_fields(metrics: dict[str, Any]) -> dict[str, Any]:
    """A variant's SEED_COLUMNS from its metrics, or nothing when it has one seed."""
    seeds = metrics.get("seeds")
    if not seeds:
        return {}
    row: dict[str, Any] = {"seeds": len(seeds["seeds"])}
    for which in ("last", "best"):
        stats = seeds[f"{which}_accuracy"]
        row |= {f"{which}_accuracy_mean": stats["mean"], f"{which}_accuracy_sd": stats["sd"]}
    return row


def verdict(row: pd.Series, top: pd.Series) -> str:
    """The variant's best-checkpoint mean accuracy against the top variant's: a gap larger
    than the two sds together is beyond the noise the seeds show; a smaller one is not."""
    if row["variant"] == top["variant"]:
        return "highest mean"
    gap = top["best_accuracy_mean"] - row["best_accuracy_mean"]
    noise = top["best_accuracy_sd"] + row["best_accuracy_sd"]
    if gap > noise:
        return f"below {top['variant']} by {gap:.4f}, more than its sd + theirs ({noise:.4f})"
    return f"within noise of {top['variant']}: {gap:.4f} <= sd + sd ({noise:.4f})"


def seeds_markdown(frame: pd.DataFrame) -> list[str]:
    """The noise section of compare.md: one table per dataset, or nothing with one seed."""
    if "seeds" not in frame.columns or not (frame["seeds"] > 1).any():
        return []
    parts = [
        "\n# Noise across seeds\n",
        "Each variant trained with several seeds (its `seeds`: the seed sets the initial"
        " weights, dropout and batch order; the data split is the same), every seed's last"
        " model and best checkpoint scored on the test split: mean ± sample sd. A variant is"
        " called different from its dataset's best only when the gap between their best-"
        "checkpoint means is larger than their two sds together.",
    ]
    for dataset, group in frame[frame["seeds"] > 1].groupby("dataset", sort=False):
        top = group.loc[group["best_accuracy_mean"].idxmax()]
        parts.append(
            f"\n## {dataset}\n\n| variant | seeds | last accuracy | best accuracy | best vs the"
            " top variant |\n|---|---|---|---|---|"
        )
        for _, row in group.iterrows():
            cells = [
                row["variant"],
                str(int(row["seeds"])),
                f"{row['last_accuracy_mean']:.4f} ± {row['last_accuracy_sd']:.4f}",
                f"{row['best_accuracy_mean']:.4f} ± {row['best_accuracy_sd']:.4f}",
                verdict(row, top),
            ]
            parts.append("| " + " | ".join(cells) + " |")
    return parts
