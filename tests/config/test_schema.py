"""tools.schema: params.schema.json, the JSON Schema editors check params.yaml against, written
from study.config.params.Params."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from study.config.paths import REPO_ROOT
from tools import schema


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(schema.SCHEMA_FILE.read_text()))


def test_the_committed_schema_is_generated_from_the_models(tmp_path, capsys):
    """params.schema.json is what `python -m tools.schema` writes; --check fails on a stale one."""
    assert schema.SCHEMA_FILE == REPO_ROOT / "params.schema.json"
    assert schema.SCHEMA_FILE.read_text() == schema.schema_text(), (
        "params.schema.json is stale: run `python -m tools.schema`"
    )
    stale = tmp_path / "params.schema.json"
    assert schema.main(["--check"], path=stale) == 1  # missing
    stale.write_text("{}\n")
    assert schema.main(["--check"], path=stale) == 1
    assert "params.schema.json is stale: run `python -m tools.schema`" in capsys.readouterr().err
    assert schema.main([], path=stale) == 0
    assert stale.read_text() == schema.schema_text()
    assert schema.main(["--check"], path=stale) == 0


def test_params_yaml_points_editors_at_the_schema():
    first = (REPO_ROOT / "params.yaml").read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=params.schema.json"


def test_the_schema_describes_the_restructured_params(validator):
    """seeds is a variant field; crossval lists variants per binary dataset."""
    defs = validator.schema["$defs"]
    for model in ("VariantPatch", "VariantEntry"):  # train.defaults, presets; a variant
        seeds = defs[model]["properties"]["seeds"]
        assert (seeds["type"], seeds["exclusiveMinimum"]) == ("integer", 0)
    crossval = defs["Crossval"]["properties"]
    assert "datasets" not in crossval
    assert crossval["variants"]["propertyNames"] == {"enum": ["thoracic", "thoracic_clean"]}
    assert "seeds" not in validator.schema["properties"]


def test_params_yaml_is_valid_against_the_schema_and_a_typo_is_not(validator, params):
    validator.validate(yaml.safe_load((REPO_ROOT / "params.yaml").read_text()))
    params["variants"]["act_relu"]["activation"] = "rleu"
    params["variants"]["dropout"]["unitz"] = 3
    params["variants"]["baseline"]["seeds"] = 0
    params["crossval"]["variants"]["fashion_mnist"] = ["baseline"]
    errors = sorted(validator.iter_errors(params), key=lambda e: list(e.absolute_path))
    assert [list(e.absolute_path) for e in errors] == [
        ["crossval", "variants"],
        ["variants", "act_relu", "activation"],
        ["variants", "baseline", "seeds"],
        ["variants", "dropout"],
    ]
