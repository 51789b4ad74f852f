"""Runs a Markdown guide's command blocks in order, as a user types them, with Sybil parsing
the blocks and its skip markers (`<!-- skip: next "why" -->` just before a block).

Every ```bash / ```sh / ```shell / ```console / ```python block of a document is an example;
the examples of one document share one shell session (`DocShell`): a block's exports and
`cd` carry over to the next, as in a terminal. Each block runs under `set -e -o pipefail`,
so its first failing command fails the test with the block's line and output."""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from unittest import SkipTest

from sybil import Document, Example, Sybil
from sybil.parsers.markdown import CodeBlockParser, SkipParser

SHELLS = ("bash", "sh", "shell", "console")
BLOCK_TIMEOUT_S = 600


class DocShell:
    """One terminal session: its working directory and exported variables, kept between
    blocks in files (`export -p`, `pwd`) that the next block's bash sources first. The
    workspace is made on the first block that runs (a document whose blocks are all
    skipped costs nothing)."""

    def __init__(self, workspace: Callable[[], Path], env: dict[str, str], state: Path) -> None:
        self._workspace, self._env, self._state = workspace, env, state
        self.cwd: Path | None = None
        self.seconds: list[float] = []  # each block's, to report

    def run(self, source: str) -> tuple[int, str]:
        if self.cwd is None:
            self.cwd = self._workspace()
        exports, cwd = self._state / "exports.sh", self._state / "cwd"
        script = "\n".join(
            [
                f"[ -f {shlex.quote(str(exports))} ] && source {shlex.quote(str(exports))}",
                f"cd {shlex.quote(str(self.cwd))}",
                "set -e -o pipefail",
                source,
                "set +e",
                f"export -p > {shlex.quote(str(exports))}; pwd > {shlex.quote(str(cwd))}",
            ]
        )
        start = time.monotonic()
        # Output to a file, not a pipe: a daemon a block starts (`dvc queue start`'s workers)
        # keeps its stdout open after the block ends, which a pipe would wait for.
        log = self._state / "output.log"
        with log.open("w") as out:
            proc = subprocess.run(
                ["bash", "-c", script], env=self._env, stdout=out, stderr=subprocess.STDOUT,
                timeout=BLOCK_TIMEOUT_S, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        self.seconds.append(round(time.monotonic() - start, 1))
        if proc.returncode == 0:
            self.cwd = Path(cwd.read_text().strip())
        return proc.returncode, log.read_text()


def console_commands(source: str) -> str:
    """A ```console block's commands: its `$ ` lines (the others are output)."""
    return "\n".join(line[2:] for line in source.splitlines() if line.startswith("$ "))


def evaluate_in_shell(example: Example) -> str | None:
    """Sybil's evaluator for a command block: None when it passed, else why it failed."""
    language = example.region.lexemes["arguments"]
    source = str(example.parsed)
    if language == "console":
        source = console_commands(source)
    elif language == "python":  # a fresh interpreter from the venv, as `python` on PATH
        source = f"python - <<'DOCS_PY'\n{source}\nDOCS_PY"
    code, output = example.namespace["shell"].run(source)
    if code:
        return f"{example.path}:{example.line}: the ```{language} block exited {code}:\n{output}"
    return None


SYBIL = Sybil(
    parsers=[
        SkipParser(),
        *(CodeBlockParser(lang, evaluate_in_shell) for lang in (*SHELLS, "python")),
    ]
)


def skip_reasons(document: Document) -> list[str]:
    """Problems with the document's skip markers: each must say why (`skip: next "..."`)."""
    return [
        f"{document.path}:{example.line}: a skip marker without a reason"
        for example in document.examples()
        if example.region.evaluator is not None
        and type(example.region.evaluator).__name__ == "Skipper"
        and example.parsed[0] in ("next", "start")
        and not example.parsed[1]
    ]


def run_document(path: Path, shell: DocShell) -> tuple[list[int], list[tuple[int, str]]]:
    """Every block of the document in order: (lines of the blocks run, (line, reason) of the
    blocks skipped). The first failing block raises sybil's SybilFailure."""
    document = SYBIL.parse(path)
    assert not (bad := skip_reasons(document)), bad
    document.namespace["shell"] = shell
    ran, skipped = [], []
    for example in document.examples():
        is_block = example.region.evaluator is evaluate_in_shell
        try:
            example.evaluate()
        except SkipTest as skip:
            skipped.append((example.line, str(skip)))
            continue
        if is_block:
            ran.append(example.line)
    return ran, skipped
