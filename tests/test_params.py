"""stages.params: merging defaults/presets/variant fields, and validation messages."""

from __future__ import annotations

import pytest

from stages.params import ConfigError, resolve_all_variants, resolve_variant

SEED_VARIANTS = [
    "thoracic_msle", "thoracic_mse", "thoracic_mae", "thoracic_mape", "thoracic_bce",
    "thoracic_poisson", "thoracic_cce", "baseline", "weight_decay", "constraint", "dropout",
    "adam_beta", "exp_decay", "cosine_restarts", "act_relu", "act_tanh", "act_leaky_relu",
    "act_sigmoid",
]  # fmt: skip


def test_default_params_define_every_seed_variant(params):
    cfgs = resolve_all_variants(params)
    assert list(cfgs) == SEED_VARIANTS
    assert {c["dataset"] for n, c in cfgs.items() if n.startswith("thoracic")} == {"thoracic"}


def test_merge_order_defaults_then_presets_then_variant(params):
    cfg = resolve_variant(params, "adam_beta")
    assert cfg["depth"] == 1 and cfg["units"] == 64  # preset
    assert cfg["kernel_l2"] == 0.01 and cfg["max_norm"] == 2.0 and cfg["dropout"] == 0.5
    # nested mapping merges key by key: only beta_1 is overridden
    assert cfg["optimizer"] == {
        "name": "adam",
        "learning_rate": 0.001,
        "beta_1": 0.89,
        "beta_2": 0.999,
    }
    assert cfg["epochs"] == params["train"]["defaults"]["epochs"]


def test_seed_regularization_ladder(params):
    wd, con, drop = (resolve_variant(params, n) for n in ("weight_decay", "constraint", "dropout"))
    assert (wd["max_norm"], wd["dropout"]) == (None, 0.0)
    assert (con["max_norm"], con["dropout"]) == (2.0, 0.0)
    assert (drop["max_norm"], drop["dropout"]) == (2.0, 0.5)
    assert resolve_variant(params, "cosine_restarts")["lr_schedule"]["name"] == (
        "cosine_decay_restarts"
    )


def test_thoracic_mlp_matches_the_seed(params):
    cfg = resolve_variant(params, "thoracic_msle")
    assert (cfg["depth"], cfg["units"], cfg["dropout"]) == (2, 30, [0.5, 0.0])
    assert cfg["loss"] == "mean_squared_logarithmic_error"
    assert (cfg["epochs"], cfg["batch_size"]) == (30, 30)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("activation", "relu6x", "allowed: elu, gelu, leaky_relu"),
        ("loss", "hinge", "variants.baseline.loss: unknown value 'hinge'; allowed:"),
        ("dataset", "cifar", "allowed: fashion_mnist, thoracic"),
        ("dropout", 1.0, "dropout: rates must be in [0, 1)"),
        ("dropout", -0.1, "dropout: rates must be in [0, 1)"),
        ("epochs", 0, "variants.baseline.epochs: must be a positive integer"),
        ("batch_size", -5, "variants.baseline.batch_size: must be a positive integer"),
        ("optimizer", {"name": "adamx"}, "optimizer.name: unknown value 'adamx'; allowed: adam"),
        ("optimizer", {"name": "adam", "lr": 1}, "optimizer: unknown field(s) lr; allowed:"),
        ("kernel_l2", -1, "kernel_l2: must be a number >= 0"),
        ("max_norm", 0, "max_norm: must be > 0 or null"),
        ("lr_schedule", {"name": "step"}, "lr_schedule.name: unknown value 'step'; allowed:"),
        (
            "lr_schedule",
            {"name": "exponential_decay", "initial_learning_rate": 0.1},
            "exponential_decay takes decay_rate, decay_steps, initial_learning_rate",
        ),
        ("units2", 3, "variants.baseline: unknown field(s) units2; allowed: presets,"),
        ("presets", ["nope"], "variants.baseline.presets: unknown preset 'nope'; allowed:"),
    ],
)
def test_bad_variant_fields_name_the_key(params, field, value, message):
    params["variants"]["baseline"][field] = value
    with pytest.raises(ConfigError) as err:
        resolve_variant(params, "baseline")
    assert message in str(err.value)


def test_dropout_list_needs_one_rate_per_layer(params):
    params["variants"]["baseline"].update(depth=2, dropout=[0.5])
    with pytest.raises(ConfigError, match=r"dropout: a list needs one rate per hidden layer"):
        resolve_variant(params, "baseline")


def test_thoracic_rejects_fashion_only_loss(params):
    params["variants"]["thoracic_bce"]["loss"] = "sparse_categorical_crossentropy"
    with pytest.raises(ConfigError, match=r"thoracic_bce\.loss"):
        resolve_variant(params, "thoracic_bce")


def test_a_typo_in_the_last_variant_fails_before_any_training(params):
    params["variants"]["act_sigmoid"]["activation"] = "sigmiod"
    with pytest.raises(ConfigError, match=r"variants.act_sigmoid.activation: unknown value"):
        resolve_all_variants(params)


def test_unknown_variant_lists_defined_ones(params):
    with pytest.raises(ConfigError, match="unknown variant 'nope'; defined: thoracic_msle"):
        resolve_variant(params, "nope")


def test_every_variant_states_its_dataset_itself(params):
    """dvc.yaml picks each variant's data files with ${item.dataset}, which sees only the
    fields a variant spells out: a dataset inherited from defaults or a preset is invisible."""
    assert "dataset" not in params["train"]["defaults"]
    assert not any("dataset" in preset for preset in params["train"]["presets"].values())
    assert all("dataset" in own for own in params["variants"].values())


def test_a_variant_without_its_own_dataset_fails_with_one_clear_message(params):
    params["variants"]["thoracic_bce"].pop("dataset", None)
    params["train"]["presets"]["thoracic_mlp"]["dataset"] = "thoracic"  # not enough
    with pytest.raises(ConfigError) as err:
        resolve_all_variants(params)
    message = str(err.value)
    assert message.startswith("variants.thoracic_bce.dataset: missing")
    assert "dvc.yaml" in message and "allowed: fashion_mnist, thoracic" in message
