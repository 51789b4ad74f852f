"""tools.schema: params.schema.json, the JSON Schema editors check params.yaml against."""

from __future__ import annotations

import json

import jsonschema
import yaml

from stages.params import REPO_ROOT
from tools import schema


def test_the_committed_schema_is_generated_from_the_models(tmp_path):
    """params.schema.json is what `python -m tools.schema` writes; --check fails on a stale one."""
    assert (REPO_ROOT / "params.schema.json").read_text() == schema.schema_text(), (
        "params.schema.json is stale: run `python -m tools.schema`"
    )
    stale = tmp_path / "params.schema.json"
    stale.write_text("{}\n")
    assert schema.main(["--check"], path=stale) == 1
    assert schema.main([], path=stale) == 0
    assert schema.main(["--check"], path=stale) == 0


def test_params_yaml_points_editors_at_the_schema():
    first = (REPO_ROOT / "params.yaml").read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=params.schema.json"


def test_params_yaml_is_valid_against_the_schema_and_a_typo_is_not(params):
    validator = jsonschema.Draft202012Validator(json.loads(schema.SCHEMA_FILE.read_text()))
    validator.validate(yaml.safe_load((REPO_ROOT / "params.yaml").read_text()))
    params["variants"]["act_relu"]["activation"] = "rleu"
    params["variants"]["dropout"]["unitz"] = 3
    assert len(list(validator.iter_errors(params))) == 2
