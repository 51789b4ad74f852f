"""stages.params: merging defaults/presets/variant fields, validation messages."""

from __future__ import annotations

import copy
import time

import pytest

from stages.params import (
    ConfigError,
    resolve_all_variants,
    resolve_variant,
    validate_params,
)

ACTIVATIONS = "allowed: elu, gelu, leaky_relu, linear, relu, selu, sigmoid, tanh"
FASHION_LOSSES = "allowed: categorical_crossentropy, sparse_categorical_crossentropy"
SCHEDULES = "allowed: cosine_decay_restarts, exponential_decay"

SEED_VARIANTS = [
    "thoracic_msle", "thoracic_mse", "thoracic_mae", "thoracic_mape", "thoracic_bce",
    "thoracic_poisson", "thoracic_cce", "baseline", "weight_decay", "constraint", "dropout",
    "adam_beta", "exp_decay", "cosine_restarts", "act_relu", "act_tanh", "act_leaky_relu",
    "act_sigmoid",
]  # fmt: skip


# Issue 10: the thoracic network on cleaned features, unweighted and class-weighted.
CLEAN_VARIANTS = ["thoracic_bce_clean", "thoracic_bce_clean_balanced"]


def test_default_params_define_every_seed_variant(params):
    cfgs = resolve_all_variants(params)
    assert [n for n in cfgs if n in SEED_VARIANTS] == SEED_VARIANTS
    assert sorted(cfgs) == sorted(SEED_VARIANTS + CLEAN_VARIANTS)
    seed_thoracic = [n for n in SEED_VARIANTS if n.startswith("thoracic")]
    assert {cfgs[n]["dataset"] for n in seed_thoracic} == {"thoracic"}
    assert {cfgs[n]["dataset"] for n in CLEAN_VARIANTS} == {"thoracic_clean"}


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
        ("activation", "relu6x", f"baseline.activation: unknown value 'relu6x'; {ACTIVATIONS}"),
        ("loss", "hinge", f"variants.baseline.loss: unknown value 'hinge'; {FASHION_LOSSES}"),
        ("dataset", "cifar", "dataset: unknown value 'cifar'; allowed: fashion_mnist, thoracic"),
        ("dropout", 1.0, "variants.baseline.dropout: must be < 1, got 1.0"),
        ("dropout", -0.1, "variants.baseline.dropout: must be >= 0, got -0.1"),
        ("dropout", "0.5", "variants.baseline.dropout: must be a number, got '0.5'"),
        ("epochs", 0, "variants.baseline.epochs: must be > 0, got 0"),
        ("epochs", True, "variants.baseline.epochs: must be an integer, got True"),
        ("batch_size", -5, "variants.baseline.batch_size: must be > 0, got -5"),
        (
            "optimizer",
            {"name": "adamx"},
            "optimizer.name: unknown value 'adamx'; allowed: adam, adamw, nadam, rmsprop, sgd",
        ),
        (
            "optimizer",
            {"name": "adam", "lr": 1},
            "variants.baseline.optimizer: unknown field(s) lr; allowed: beta_1, beta_2,"
            " learning_rate, momentum, name, weight_decay",
        ),
        ("kernel_l2", -1, "variants.baseline.kernel_l2: must be >= 0, got -1"),
        ("max_norm", 0, "variants.baseline.max_norm: must be > 0, got 0"),
        ("lr_schedule", {"name": "step"}, f"lr_schedule.name: unknown value 'step'; {SCHEDULES}"),
        ("lr_schedule", {"decay_steps": 10}, f"lr_schedule.name: missing; {SCHEDULES}"),
        (
            "lr_schedule",
            {"name": "exponential_decay", "initial_learning_rate": 0.1},
            "variants.baseline.lr_schedule.decay_steps: missing;"
            " variants.baseline.lr_schedule.decay_rate: missing",
        ),
        (
            "lr_schedule",
            {"name": "cosine_decay_restarts", "initial_learning_rate": 0.1, "decay_steps": 9},
            "lr_schedule: unknown field(s) decay_steps; allowed: alpha, first_decay_steps,"
            " initial_learning_rate, m_mul, name, t_mul",
        ),
        (
            "reduce_lr_on_plateau",
            {"factor": 1.0, "patience": 3},
            "variants.baseline.reduce_lr_on_plateau.factor: must be < 1, got 1.0",
        ),
        (
            "reduce_lr_on_plateau",
            {"factor": 0.5},
            "variants.baseline.reduce_lr_on_plateau.patience: missing",
        ),
        ("units2", 3, "variants.baseline: unknown field(s) units2; allowed: activation,"),
        (
            "presets",
            ["nope"],
            "presets: unknown preset 'nope'; allowed: dense64, regularized, thoracic_mlp",
        ),
    ],
)
def test_bad_variant_fields_name_the_key(params, field, value, message):
    params["variants"]["baseline"][field] = value
    for resolve in (
        lambda: resolve_variant(params, "baseline"),
        lambda: resolve_all_variants(params),
    ):
        with pytest.raises(ConfigError) as err:
            resolve()
        assert message in str(err.value)
        assert "\n" not in str(err.value)


def test_plateau_and_schedule_exclude_each_other(params):
    # exp_decay has an lr_schedule (params.yaml): Keras could not set its optimizer's rate.
    params["variants"]["exp_decay"]["reduce_lr_on_plateau"] = {"factor": 0.5, "patience": 3}
    with pytest.raises(ConfigError, match=r"variants\.exp_decay\.reduce_lr_on_plateau: cannot be"):
        resolve_variant(params, "exp_decay")
    params["variants"]["exp_decay"]["lr_schedule"] = None
    plateau = resolve_variant(params, "exp_decay")["reduce_lr_on_plateau"]
    assert plateau == {"factor": 0.5, "patience": 3}


def test_unknown_field_lists_every_allowed_one_including_presets(params):
    params["variants"]["baseline"]["unitz"] = 3
    with pytest.raises(ConfigError) as err:
        resolve_variant(params, "baseline")
    assert str(err.value) == (
        "variants.baseline: unknown field(s) unitz; allowed: activation, activity_l1,"
        " batch_size, class_weight, dataset, depth, dropout, epochs, kernel_l2, loss, lr_schedule,"
        " max_norm, optimizer, patience, presets, reduce_lr_on_plateau, steps_per_execution,"
        " units"
    )


def test_dropout_list_needs_one_rate_per_layer(params):
    params["variants"]["baseline"].update(depth=2, dropout=[0.5])
    with pytest.raises(ConfigError, match=r"dropout: a list needs one rate per hidden layer"):
        resolve_variant(params, "baseline")
    params["variants"]["baseline"].update(dropout=[0.5, 1.5])
    with pytest.raises(ConfigError, match=r"variants\.baseline\.dropout\[1\]: must be < 1"):
        resolve_variant(params, "baseline")


def test_thoracic_rejects_fashion_only_loss(params):
    params["variants"]["thoracic_bce"]["loss"] = "sparse_categorical_crossentropy"
    with pytest.raises(ConfigError) as err:
        resolve_variant(params, "thoracic_bce")
    assert str(err.value).startswith(
        "variants.thoracic_bce.loss: unknown value 'sparse_categorical_crossentropy'; allowed:"
        " binary_crossentropy, categorical_crossentropy, mean_absolute_error,"
    )


def test_a_loss_from_defaults_is_checked_against_the_variants_dataset(params):
    """The default loss is fashion's; a thoracic variant must override it (its preset does)."""
    params["variants"]["thoracic_bce"] = {"dataset": "thoracic"}
    with pytest.raises(ConfigError) as err:
        resolve_all_variants(params)
    assert "variants.thoracic_bce.loss: unknown value 'sparse_categorical_crossentropy'" in str(
        err.value
    )


def test_a_typo_in_the_last_variant_fails_before_any_training(params):
    params["variants"]["act_sigmoid"]["activation"] = "sigmiod"
    with pytest.raises(ConfigError) as err:
        resolve_all_variants(params)
    assert (
        str(err.value) == f"variants.act_sigmoid.activation: unknown value 'sigmiod'; {ACTIVATIONS}"
    )


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("seed",), -1, "seed: must be >= 0, got -1"),
        (("seeds", "repeats"), 0, "seeds.repeats: must be > 0, got 0"),
        (("runner", "prefork"), "yes", "runner.prefork: must be true or false, got 'yes'"),
        (("evaluate", "threshold"), 2, "evaluate.threshold: must be <= 1, got 2"),
        (("evaluate", "diagnostics", "saturation"), 1, "diagnostics.saturation: must be < 1"),
        (("prepare", "thoracic", "val_fraction"), 0, "thoracic.val_fraction: must be > 0, got 0"),
        (("train", "defaults", "activation"), "relu6", f"unknown value 'relu6'; {ACTIVATIONS}"),
        (("train", "presets", "dense64", "epochs"), 0, "presets.dense64.epochs: must be > 0"),
        (
            ("train", "defaults", "optimizer", "lr"),
            0.1,
            "train.defaults.optimizer: unknown field(s) lr; allowed: beta_1, beta_2,",
        ),
        (
            ("fetch", "datasets", "cifar"),
            {"urls": [], "files": {}},
            "fetch.datasets.cifar: unknown value 'cifar'; allowed: fashion_mnist, thoracic",
        ),
        (
            ("compare", "dpi"),
            100,
            "compare: unknown field(s) dpi; allowed: chart_dpi",
        ),
        (
            ("mlflow_",),
            {},
            "params.yaml: unknown field(s) mlflow_; allowed: compare, crossval, deterministic,",
        ),
    ],
)
def test_every_section_is_checked_up_front(params, path, value, message):
    node = params
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    with pytest.raises(ConfigError) as err:
        resolve_all_variants(params)
    assert message in str(err.value)


def test_every_error_is_reported_in_one_line(params):
    params["seed"] = "42"
    del params["compare"]
    params["variants"]["baseline"]["epochs"] = 0
    with pytest.raises(ConfigError) as err:
        validate_params(params)
    assert str(err.value) == (
        "seed: must be an integer, got '42'; variants.baseline.epochs: must be > 0, got 0;"
        " compare: missing"
    )


def test_resolved_configs_are_plain_dicts_without_unset_optional_fields(params):
    cfg = resolve_variant(params, "exp_decay")
    assert type(cfg) is dict and type(cfg["optimizer"]) is dict
    assert cfg["lr_schedule"] == {
        "name": "exponential_decay",
        "initial_learning_rate": 0.01,
        "decay_steps": 10000,
        "decay_rate": 0.9,
    }
    assert cfg["dataset"] == "fashion_mnist"  # merged config keeps the variant's own dataset
    cfg["optimizer"]["beta_1"] = 0.5  # a copy: changing it leaves params alone
    assert params["train"]["defaults"]["optimizer"]["beta_1"] == 0.9


def test_validating_every_variant_is_cheap(params):
    """The train stage validates the whole file before training; keep it well under 50 ms."""
    resolve_all_variants(params)  # the models are built on first use; a stage pays that once
    start = time.perf_counter()
    for _ in range(5):
        resolve_all_variants(copy.deepcopy(params))
    assert (time.perf_counter() - start) / 5 < 0.05


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
