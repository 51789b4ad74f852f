"""fetch: copy or download the raw data files into data/raw/, checksum-verified.

Usage: python -m stages.fetch
Sources are tried in order: each directory in $DATA_MIRRORS, fetch.local_dirs, then each
dataset's URLs; a file is accepted only when the sha256 of its (decompressed) content matches
the pinned value, whatever the source (study/data/fetch.py).
"""

from __future__ import annotations

from study.config.cli import run_stage
from study.config.params import load_params
from study.config.paths import RAW_DIR, REPO_ROOT
from study.data.fetch import env_mirrors, fetch


def main() -> None:
    params = load_params()
    for key, path in fetch(params.fetch, env_mirrors(), REPO_ROOT / RAW_DIR).items():
        print(f"fetch: {key} -> {path.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    run_stage(main)
