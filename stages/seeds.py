"""seeds: train a variant again with other seeds, so the report can tell a finding from noise.

Usage: python -m stages.seeds VARIANT   (dvc.yaml: one stage per variant)
With seeds.repeats = N, the variant is trained exactly as train@VARIANT trains it (the same
data split, config and code: stages.train.train_run) with the seeds seed+1 ... seed+N-1, each
as its own MLflow run "<variant>/seed<S>", into models/<variant>/seeds/seed<S>/ (best.keras,
last.keras, train.json, history.csv). models/<variant>/seeds/seeds.json lists them, written
last (also for N = 1: no training, an empty list). evaluate@VARIANT scores every seed's models
on the test split; compare shows their mean and sd.
"""

from __future__ import annotations

import json

from stages.formats import write_atomic
from stages.params import (
    MODELS_DIR,
    REPO_ROOT,
    SEEDS_DIR,
    SEEDS_FILE,
    load_params,
    require,
    run_stage,
    seed_dir,
    variant_arg,
    variant_config,
)


def extra_seeds(seed: int, repeats: int) -> list[int]:
    """The seeds of a variant's other trainings: train@V trains `seed` itself."""
    return [seed + k for k in range(1, repeats)]


def main() -> None:
    variant = variant_arg(__doc__)
    params = load_params()
    cfg = variant_config(params, variant)  # validates the whole file, seeds.repeats too
    seeds = extra_seeds(require(params, "seed"), require(params, "seeds.repeats"))
    out = REPO_ROOT / MODELS_DIR / variant / SEEDS_DIR
    if seeds:
        from stages.train import train_run

        for seed in seeds:
            where = seed_dir(out, seed)
            label = f"{variant}/seed{seed}"
            summary = train_run(params, variant, cfg, seed, where, where / "history.csv", label)
            print(f"seeds {label}: {json.dumps(summary)}", flush=True)
    else:
        print(f"seeds {variant}: seeds.repeats is 1; no other seed to train")
    write_atomic(out / SEEDS_FILE, (json.dumps({"seeds": seeds}) + "\n").encode())


if __name__ == "__main__":
    run_stage(main)
