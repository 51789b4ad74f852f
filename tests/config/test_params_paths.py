"""Values of params.yaml that become paths: variant names (models/<name>, .backup/<name>,
variants/<name>.json, plots/history/<name>.csv) and search.storage (the search deletes its
last experiment there) cannot point outside the repository."""

from __future__ import annotations

import copy

import pytest
from params_files import error, load

NAME_RULE = "allowed: letters, digits, _ and -, starting with a letter or digit"
BAD_NAMES = ["../x", "a/b", ".hidden", "", "-x", "a b", "x/../../y", "a\\b"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_variant_name_that_is_no_plain_file_name_is_refused(params, tmp_path, name):
    params["variants"][name] = copy.deepcopy(params["variants"]["baseline"])
    assert error(params, tmp_path) == f"variants.{name}: invalid name {name!r}" + (
        f" (it becomes a file name); {NAME_RULE}"
    )


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_searched_variant_name_that_is_no_plain_file_name_is_refused(params, tmp_path, name):
    params["search"]["variant"] = name
    assert error(params, tmp_path) == (
        f"search.variant: invalid name {name!r} (it becomes a file name); {NAME_RULE}"
    )


def test_names_of_letters_digits_underscores_and_dashes_are_accepted(params, tmp_path):
    for name in ("v2", "A-b_c", "2nd"):
        params["variants"][name] = copy.deepcopy(params["variants"]["baseline"])
    params["search"]["variant"] = "searched-2"
    loaded = load(params, tmp_path)
    assert {"v2", "A-b_c", "2nd"} <= set(loaded.variants)
    assert loaded.search.variant == "searched-2"


@pytest.mark.parametrize(
    "storage", ["/tmp/elsewhere", "../outside", "a/../../x", "", ".", "a/..", "/", "/x://y"]
)
def test_a_search_storage_outside_the_repository_is_refused(params, tmp_path, storage):
    params["search"]["storage"] = storage
    message = error(params, tmp_path)
    assert message.startswith(f"search.storage: {storage!r} leads outside the repository")
    assert message.endswith("or a URI (scheme://...)")


def test_a_search_storage_inside_the_repository_or_a_uri_is_accepted(params, tmp_path):
    for storage in (".dvc/tmp/search", "a/../b", str(tmp_path / "tune"), "s3://bucket/../x"):
        params["search"]["storage"] = storage
        assert load(params, tmp_path).search.storage == storage
