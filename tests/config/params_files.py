"""params.yaml written into a directory and loaded (study.config.params.load_params), and the
allowed-value lists its error messages end with: shared by test_params and
test_params_variants."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from study.config.errors import ConfigError
from study.config.params import Params, load_params

ACTIVATIONS = "allowed: elu, gelu, leaky_relu, linear, relu, selu, sigmoid, tanh"
FASHION_LOSSES = "allowed: categorical_crossentropy, sparse_categorical_crossentropy"
SCHEDULES = "allowed: cosine_decay_restarts, exponential_decay"
DATASETS = "allowed: fashion_mnist, thoracic, thoracic_clean"
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def load(raw: dict, root: Path) -> Params:
    """load_params on `raw` written as root/params.yaml."""
    (root / "params.yaml").write_text(yaml.dump(raw, Dumper=DUMPER, sort_keys=False))
    return load_params(root)


def error(raw: dict, root: Path) -> str:
    """The one-line ConfigError load_params raises for `raw`."""
    with pytest.raises(ConfigError) as err:
        load(raw, root)
    message = str(err.value)
    assert "\n" not in message
    return message
