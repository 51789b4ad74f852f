"""prepare: raw files -> seeded, stratified train/val/test splits under data/prepared/.

Usage: python -m stages.prepare   (study/data/prepare.py; params: seed, prepare)
"""

from __future__ import annotations

from study.config.cli import run_stage
from study.config.params import load_params
from study.config.paths import PREPARED_DIR, RAW_DIR, REPO_ROOT
from study.data.prepare import prepare


def main() -> None:
    params = load_params()
    prepare(params.prepare, params.seed, REPO_ROOT / RAW_DIR, REPO_ROOT / PREPARED_DIR)


if __name__ == "__main__":
    run_stage(main)
