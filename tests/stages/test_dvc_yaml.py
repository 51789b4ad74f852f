"""dvc.yaml's dependency graph: every stage depends on the code it runs, on its own data and on
the params it reads, and on nothing more, so an edit reruns exactly the stages it can change.
Here the code and data deps and which stages read which configs; that a stage declares
exactly the params its main() reads: test_params_read."""

from __future__ import annotations

import shlex
from typing import Any

import pytest
import yaml

from study.config.code import module_files
from study.config.params import Params, load_params
from study.config.paths import PREPARED_DIR, RAW_DIR, REPO_ROOT, SPLITS, split_path
from study.config.search import Search
from study.data.prepare import THORACIC_CSV

# The warm stage runner: it changes no result, so dvc.yaml documents it as not a dependency.
RUNNER = "tools.prefork"
PACKAGES = ("stages", "study")  # first-party code a stage can run


def dvc_stages() -> dict[str, dict[str, Any]]:
    """Stage name -> its definition (a foreach stage's `do:` block, one per stage group)."""
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    return {name: stage.get("do", stage) for name, stage in stages.items()}


def stage_module(cmd: str) -> str:
    """The module a stage runs: `python -m M ...`, or the stage behind `-m tools.prefork M`."""
    args = shlex.split(cmd)
    module = args[args.index("-m") + 1]
    return args[args.index(module) + 1] if module == RUNNER else module


def code_deps(module: str) -> set[str]:
    """What dvc.yaml must list for a stage running `module`: its file, and the study/ package
    directory of every first-party module it imports, directly or not."""
    deps = set()
    for path in module_files(module):
        rel = path.relative_to(REPO_ROOT)
        if rel.name == "__init__.py" and len(rel.parts) == 2:  # stages/ or study/ itself
            continue  # checked to hold no code: test_top_level_package_files_run_no_code
        deps.add(rel.as_posix() if rel.parts[0] == "stages" else "/".join(rel.parts[:2]))
    return deps


def test_stage_module_finds_the_module_behind_the_runner():
    assert stage_module("python -m tools.prefork stages.train ${key}") == "stages.train"
    assert stage_module("python -m stages.fetch") == "stages.fetch"
    assert code_deps("stages.crossval") >= {"stages/crossval.py", "study/crossval"}


def test_top_level_package_files_run_no_code():
    """stages/__init__.py and study/__init__.py are in no stage's deps: a docstring at most."""
    import ast

    for package in PACKAGES:
        body = ast.parse((REPO_ROOT / package / "__init__.py").read_text()).body
        code = body[1:] if body and ast.get_docstring(ast.Module(body, [])) else body
        assert not code, f"{package}/__init__.py runs code: list it in dvc.yaml"


def test_every_stage_depends_on_exactly_the_code_it_runs():
    """A stage's code deps are its module's file and the study/ packages it imports, at
    top level or inside functions, transitively: editing any of them makes the stage stale,
    and no other code edit does."""
    wrong = {}
    for name, stage in dvc_stages().items():
        module = stage_module(stage["cmd"])
        assert module.startswith("stages."), name
        declared = {dep for dep in stage["deps"] if dep.split("/")[0] in PACKAGES}
        needed = code_deps(module)
        if declared != needed:
            wrong[name] = {"missing": sorted(needed - declared), "extra": sorted(declared - needed)}
    assert not wrong, f"dvc.yaml code deps differ from the imports: {wrong}"


def test_prepare_writes_one_file_per_split_and_dataset():
    from study.config.variant import DATASETS

    outs = dvc_stages()["prepare"]["outs"]
    assert sorted(outs) == sorted(
        str(split_path(PREPARED_DIR, s, d)) for s in SPLITS for d in DATASETS
    )


@pytest.fixture(scope="module")
def resolved() -> tuple[Params, dict[str, dict[str, Any]]]:
    """main's params, and each stage as DVC resolves it: its file deps and declared params."""
    from dvc.repo import Repo

    with Repo(str(REPO_ROOT)) as repo:
        stages = {
            stage.name: {
                "files": {str(d.def_path) for d in stage.deps if not hasattr(d, "params")},
                "params": [k for d in stage.deps if hasattr(d, "params") for k in d.params],
            }
            for stage in repo.index.stages
        }
    return load_params(), stages


def data_files(files: set[str]) -> set[str]:
    return {f for f in files if f.startswith(("data/", "models/", "search/", "variants/"))}


def test_each_variant_stage_depends_on_its_own_dataset_config_and_models_only(resolved):
    """As DVC resolves the foreach stages: train@V reads V's merged config variants/V.json
    and V's dataset's train and val files, crossval_<D>@V its config and the raw CSV (the
    non-test rows, each fold encoded on its fit rows: never the train-fitted encoding),
    evaluate@V its test file and models/V; the search and the searched variant's stages
    search.dataset's files, the search never test."""
    params, stages = resolved
    wrong = {}

    def check(stage: str, expected: set[str]) -> None:
        actual = data_files(stages[stage]["files"])
        if actual != expected:
            wrong[stage] = {
                "missing": sorted(expected - actual),
                "extra": sorted(actual - expected),
            }

    for name in params.variants:
        dataset = params.variants[name].dataset
        own = {s: str(split_path(PREPARED_DIR, s, dataset)) for s in SPLITS}
        check(f"train@{name}", {own["train"], own["val"], f"variants/{name}.json"})
        check(f"evaluate@{name}", {own["test"], f"models/{name}"})
    for dataset, listed in params.crossval.variants.items():
        for name in listed:
            assert params.variants[name].dataset == dataset
            check(
                f"crossval_{dataset}@{name}", {str(RAW_DIR / THORACIC_CSV), f"variants/{name}.json"}
            )
    searched = {s: str(split_path(PREPARED_DIR, s, params.search.dataset)) for s in SPLITS}
    check("search", {searched["train"], searched["val"]})
    check("train_searched", {searched["train"], searched["val"], "search/best.yaml"})
    check("evaluate_searched", {searched["test"], f"models/{params.search.variant}"})
    assert not wrong, wrong


def test_crossval_stages_exist_exactly_for_the_listed_variants(resolved):
    params, stages = resolved
    crossval = {name for name in stages if name.startswith("crossval")}
    listed = params.crossval.variants
    assert crossval == {f"crossval_{d}@{v}" for d, names in listed.items() for v in names}
    groups = {name for name in dvc_stages() if name.startswith("crossval")}
    assert groups == {f"crossval_{dataset}" for dataset in listed}  # one per binary dataset


def test_the_search_and_the_variants_configs_are_read_by_their_own_stages_only(resolved):
    """The search reads no variant (a variant's edit leaves it and the searched variant up to
    date) and every search field but the searched variant's own (search.variant_fields, which
    train_searched merges over search/best.yaml: their edit retrains it without a search);
    the searched variant's stages read no other search param (a search edit reruns the
    search only, then them if best.yaml changed); a listed variant's config reaches its
    stages through variants/<name>.json, which the variants stage merges: no stage but that
    one (and compare's list) reads `variants` or train's defaults and presets."""
    _, stages = resolved
    search = stages["search"]["params"]
    fields = {f"search.{field}" for field in Search.model_fields} - {"search.variant_fields"}
    assert {k for k in search if k.startswith("search")} == fields
    assert not any(k.startswith("variants") for k in search)
    for name in ("train_searched", "evaluate_searched"):
        keys = set(stages[name]["params"]) - {"search.variant_fields"}
        assert not any(k.startswith(("variants", "search")) for k in keys), name
    assert "search.variant_fields" in stages["train_searched"]["params"]
    assert set(stages["variants"]["params"]) == {"train.defaults", "train.presets", "variants"}
    for name, stage in stages.items():
        if name.startswith(("train@", "crossval_", "evaluate")):
            keys = stage["params"]
            assert not any(k.startswith(("variants", "train.defaults", "train.presets"))
                           or k == "train" for k in keys), name  # fmt: skip
    assert "variants" in stages["compare"]["params"]  # the list of variants it reports
