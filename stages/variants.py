"""variants: every listed variant's merged config, one file each: variants/<name>.json.

Usage: python -m stages.variants   (params: train.defaults, train.presets, variants)
A variant is train.defaults, then its presets in order, then its own fields
(study/config/params.py). The trainings and cross-validations depend on their variant's file,
not on the params it is merged from, so a change to one variant or preset reruns exactly the
variants whose merged config changed, and the file shows what a variant trains with.
"""

from __future__ import annotations

from study.config.cli import run_stage
from study.config.params import config_json, load_params
from study.config.paths import REPO_ROOT, VARIANTS_DIR
from study.io.files import write_atomic


def main() -> None:
    params = load_params()
    for name in params.variants:
        write_atomic(
            REPO_ROOT / VARIANTS_DIR / f"{name}.json",
            config_json(params.variant(name)).encode() + b"\n",
        )
    print(f"variants: {len(params.variants)} configs in {VARIANTS_DIR}/")


if __name__ == "__main__":
    run_stage(main)
