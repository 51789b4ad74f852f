"""Write params.schema.json, the JSON Schema of params.yaml, from study.config.params.

    python -m tools.schema          # (re)write params.schema.json
    python -m tools.schema --check  # exit 1 if params.schema.json is stale

params.yaml's first line (`# yaml-language-server: $schema=params.schema.json`) points editors
with a YAML language server at it, so they complete field names and underline typos.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from study.config.paths import REPO_ROOT

SCHEMA_FILE = REPO_ROOT / "params.schema.json"


def schema_text() -> str:
    """The schema as committed: sorted keys, so the file only changes when the models do."""
    from study.config.params import Params

    return json.dumps(Params.model_json_schema(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None, path: Path = SCHEMA_FILE) -> int:
    """Write the schema to `path`, or with --check compare it; the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args(argv)
    text = schema_text()
    if args.check:
        if not path.is_file() or path.read_text() != text:
            print(f"{path.name} is stale: run `python -m tools.schema`", file=sys.stderr)
            return 1
        return 0
    path.write_text(text)
    print(f"wrote {path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
