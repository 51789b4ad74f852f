"""search: a hyperparameter search with Ray Tune; its best trial becomes the searched variant.

Usage: python -m stages.search   (dvc.yaml's search stage; params.yaml's `search` section)
Trains trials on the train and val splits of search.dataset (never test) and writes
search/best.yaml, metrics/search.json, reports/search_trials.{csv,md} and reports/search.png
(study/search/run.py).
"""

from __future__ import annotations

import json
import sys

from study.config.cli import run_stage
from study.config.params import load_params
from study.search.run import Interrupted, run_search


def main() -> None:
    params = load_params()
    try:
        stats = run_search(params)
    except KeyboardInterrupt:
        print("search: interrupted: Ray shut down, trial runs ended KILLED", file=sys.stderr)
        raise SystemExit(128 + Interrupted.signum) from None
    stats.pop("trial_records")
    print(f"search: {json.dumps(stats)}")


if __name__ == "__main__":
    run_stage(main)
