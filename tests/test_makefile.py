"""The Makefile's set-up on a fresh clone: it names the fix for a wrong interpreter or a
missing venv module, and makes a half-made .venv again instead of failing on it forever.
Run on a copy of the Makefile with stand-in interpreters (no real pip install)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from study.config.paths import REPO_ROOT

# A stand-in `python`: answers the version and module checks as REAL would, and for
# `-m venv DIR` makes a venv whose pip only records that it ran.
FAKE_PYTHON = """#!/bin/sh
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
  mkdir -p "$3/bin" && ln -s {real} "$3/bin/python"
  printf '#!/bin/sh\\necho "$@" > "%s/pip-ran"\\n' "$3" > "$3/bin/pip"; chmod +x "$3/bin/pip"
  exit 0
fi
{body}
"""


def make_setup(tmp_path: Path, body: str) -> subprocess.CompletedProcess:
    for name in ("Makefile", "requirements.lock"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    python = tmp_path / "python"
    python.write_text(FAKE_PYTHON.format(real=sys.executable, body=body))
    python.chmod(0o755)
    return subprocess.run(
        ["make", "--no-print-directory", f"PYTHON={python}", "setup"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_another_python_than_3_11_is_refused_naming_the_fix(tmp_path):
    proc = make_setup(tmp_path, 'case "$1" in --version) echo "Python 3.12.3";; *) exit 1;; esac')
    assert proc.returncode != 0
    assert "pinned for Python 3.11" in proc.stderr and "Python 3.12.3" in proc.stderr
    assert "make PYTHON=python3.11 setup" in proc.stderr
    assert not (tmp_path / ".venv").exists()


def test_a_python_without_the_venv_module_is_refused_naming_the_package(tmp_path):
    body = f'case "$2" in *ensurepip*) exit 1;; esac; exec {sys.executable} "$@"'
    proc = make_setup(tmp_path, body)
    assert proc.returncode != 0
    assert "apt-get install python3.11-venv" in proc.stderr
    assert not (tmp_path / ".venv").exists()


def test_a_half_made_venv_is_made_again(tmp_path):
    """What `python3 -m venv` leaves without Debian's python3-venv: bin/python, no pip."""
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").symlink_to(sys.executable)
    (tmp_path / ".venv" / "half-made").touch()
    proc = make_setup(tmp_path, f'exec {sys.executable} "$@"')
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / ".venv" / "half-made").exists()
    assert (tmp_path / ".venv" / "pip-ran").read_text().split() == [
        "install", "-q", "-r", "requirements.lock"
    ]  # fmt: skip
    assert (tmp_path / ".venv" / ".installed").is_file()
