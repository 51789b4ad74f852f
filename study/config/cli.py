"""What every stage entry point does around its work: arguments and one-line errors."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from study.config.errors import StageError


def name_arg(description: str | None, what: str = "variant") -> str:
    """The one positional argument of a per-variant stage (train, evaluate, crossval)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(what, help=f"a {what} of params.yaml")
    return getattr(parser.parse_args(), what)


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); report a StageError as one line on stderr and exit 1."""
    try:
        main()
    except StageError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
