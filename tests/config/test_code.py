"""study.config.code.module_files: the first-party files a module runs, read from the source
(what a training's resume key hashes), on a small synthetic `study` package."""

from __future__ import annotations

from pathlib import Path

import pytest

from study.config.code import module_files
from study.config.paths import REPO_ROOT

# A package laid out like study/: what each file imports is in its source only.
PACKAGE = {
    "study/__init__.py": "",
    "study/a/__init__.py": "",
    "study/a/train.py": (
        "import os\n"
        "import numpy as np\n"  # third party: not followed
        "from study.a.model import build\n"
        "from study.b import helpers\n"  # `from a import b`: b is a module
        "from study.b.helpers import name_not_a_module\n"
        "import study.ghost\n"  # first-party name without a file: ignored
        "import studyx.other\n"  # not the package, despite the prefix
        "\n"
        "def fit():\n"
        "    from study.c.late import later\n"  # inside a function: counted
        "    return later()\n"
    ),
    "study/a/model.py": "from study.a import train\n\ndef build(): ...\n",  # a cycle
    "study/b/__init__.py": "from study.b import init_dep\n",  # a package's __init__ imports
    "study/b/init_dep.py": "",
    "study/b/helpers.py": "import study.d.deep\n\ndef name_not_a_module(): ...\n",
    "study/c/__init__.py": "",
    "study/c/late.py": "def later():\n    import study.d.deeper\n    return 1\n",
    "study/d/__init__.py": "",
    "study/d/deep.py": "",  # transitively, through helpers
    "study/d/deeper.py": "",  # transitively, inside two functions
    "study/unused.py": "import study.a.train\n",  # imports train, is not imported by it
    "studyx/other.py": "",
}


@pytest.fixture
def package(tmp_path: Path) -> Path:
    for name, source in PACKAGE.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(source)
    return tmp_path


def relative(files: list[Path], root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in files]


def test_follows_every_first_party_import_transitively(package):
    files = module_files("study.a.train", root=package)
    assert relative(files, package) == [
        "study/__init__.py",
        "study/a/__init__.py",
        "study/a/model.py",
        "study/a/train.py",
        "study/b/__init__.py",
        "study/b/helpers.py",
        "study/b/init_dep.py",
        "study/c/__init__.py",
        "study/c/late.py",
        "study/d/__init__.py",
        "study/d/deep.py",
        "study/d/deeper.py",
    ]
    assert files == sorted(files) and all(p.is_absolute() for p in files)


def test_a_leaf_module_brings_only_its_packages_init_files(package):
    assert relative(module_files("study.d.deep", root=package), package) == [
        "study/__init__.py",
        "study/d/__init__.py",
        "study/d/deep.py",
    ]


def test_an_import_added_inside_a_function_is_picked_up(package):
    """The resume key changes when a function starts importing another module."""
    before = module_files("study.d.deep", root=package)
    (package / "study/d/deep.py").write_text("def f():\n    from study import unused\n")
    after = relative(module_files("study.d.deep", root=package), package)
    assert set(after) - set(relative(before, package)) == {
        "study/unused.py",  # `from study import unused`: a module
        "study/a/__init__.py",  # and what it imports
        "study/a/train.py",
        "study/a/model.py",
        "study/b/__init__.py",
        "study/b/helpers.py",
        "study/b/init_dep.py",
        "study/c/__init__.py",
        "study/c/late.py",
        "study/d/deeper.py",
    }


def test_unknown_and_third_party_modules_give_nothing(package):
    assert module_files("study.ghost", root=package) == [package / "study/__init__.py"]
    assert module_files("numpy", root=package) == []  # no file of it under root


def test_the_training_code_of_this_repository():
    """What study.training.backups hashes: train.py and the study modules behind it, no
    stage entry point, test or tool."""
    files = relative(module_files("study.training.train"), REPO_ROOT)
    assert "study/training/train.py" in files and "study/__init__.py" in files
    assert "study/config/variant.py" in files  # through the typed config it takes
    assert all(f.startswith("study/") and f.endswith(".py") for f in files)
    assert all((REPO_ROOT / f).is_file() for f in files)
