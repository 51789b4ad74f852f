"""crossval: refit one variant on every cross-validation fold of its dataset's non-test rows,
beside a logistic regression and the majority class on the same folds.

Usage: python -m stages.crossval VARIANT   (dvc.yaml: crossval_<dataset>@<variant>, for the
variants listed in crossval.variants)
Reads the raw CSV (the non-test rows of prepare's split; each fold's features encoded on its fit
rows as prepare.<dataset> says). Writes metrics/crossval/<variant>.json: per model (variant,
logistic, majority) each fold's AUC, balanced accuracy and accuracy, their mean and sd
(study/crossval/folds.py).
"""

from __future__ import annotations

import json
import time

from study.config.cli import name_arg, run_stage
from study.config.errors import ConfigError
from study.config.params import load_params, variant_config
from study.config.paths import METRICS_DIR, RAW_DIR, REPO_ROOT
from study.crossval.folds import crossval_scores, non_test_rows
from study.io.files import write_atomic
from study.training.fitting import configure_tf


def main() -> None:
    variant = name_arg(__doc__)
    params = load_params()
    cfg = variant_config(params, variant)
    if variant not in params.crossval.variants.get(cfg.dataset, []):
        raise ConfigError(f"crossval.variants.{cfg.dataset}: {variant!r} is not listed")
    data = non_test_rows(REPO_ROOT / RAW_DIR, params.prepare, params.seed)
    features = getattr(params.prepare, cfg.dataset)  # prepare.<dataset>: its encoding
    configure_tf(params.seed, params.deterministic, params.train.threads)

    def progress(i: int, seconds: float) -> None:
        print(f"crossval {variant}: fold {i + 1} {seconds:.1f}s", flush=True)

    start = time.perf_counter()
    scores = crossval_scores(
        cfg,
        data,
        features,
        params.crossval,
        params.seed,
        params.evaluate.threshold,
        progress,
        params.train.jit_compile,
    )
    text = json.dumps(scores, indent=2, sort_keys=True, allow_nan=False) + "\n"
    write_atomic(REPO_ROOT / METRICS_DIR / "crossval" / f"{variant}.json", text.encode())
    print(f"crossval {variant}: {json.dumps(scores)} in {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    run_stage(main)
