"""study.config.params (and the models of study.config.variant/sections it puts together):
the whole file validated up front, one-line messages naming the key, every section checked,
the cost of validating; params.yaml as plain data (study.config.raw). What a variant resolves
to (merging, seeds, the searched variant, crossval.variants) is test_params_variants'."""

from __future__ import annotations

import pytest
from params_files import ACTIVATIONS, DATASETS, FASHION_LOSSES, SCHEDULES, error, load

from study.config.errors import ConfigError
from study.config.params import Params, load_params, resolve_entry
from study.config.raw import read_params, require
from study.config.validation import validate


@pytest.fixture(scope="module")
def repo_params() -> Params:
    """The repository's params.yaml, validated."""
    return load_params()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "activation",
            "relu6x",
            f"variants.baseline.activation: unknown value 'relu6x'; {ACTIVATIONS}",
        ),
        ("loss", "hinge", f"variants.baseline.loss: unknown value 'hinge'; {FASHION_LOSSES}"),
        ("dataset", "cifar", f"variants.baseline.dataset: unknown value 'cifar'; {DATASETS}"),
        ("dropout", 1.0, "variants.baseline.dropout: must be < 1, got 1.0"),
        ("dropout", -0.1, "variants.baseline.dropout: must be >= 0, got -0.1"),
        ("dropout", "0.5", "variants.baseline.dropout: must be a number, got '0.5'"),
        ("epochs", 0, "variants.baseline.epochs: must be > 0, got 0"),
        ("epochs", True, "variants.baseline.epochs: must be an integer, got True"),
        ("batch_size", -5, "variants.baseline.batch_size: must be > 0, got -5"),
        (
            "optimizer",
            {"name": "adamx"},
            "variants.baseline.optimizer.name: unknown value 'adamx'; allowed: adam, adamw,"
            " nadam, rmsprop, sgd",
        ),
        (
            "optimizer",
            {"name": "adam", "lr": 1},
            "variants.baseline.optimizer: unknown field(s) lr; allowed: beta_1, beta_2,"
            " learning_rate, momentum, name, weight_decay",
        ),
        ("kernel_l2", -1, "variants.baseline.kernel_l2: must be >= 0, got -1"),
        ("max_norm", 0, "variants.baseline.max_norm: must be > 0, got 0"),
        (
            "lr_schedule",
            {"name": "step"},
            f"variants.baseline.lr_schedule.name: unknown value 'step'; {SCHEDULES}",
        ),
        (
            "lr_schedule",
            {"decay_steps": 10},
            f"variants.baseline.lr_schedule.name: missing; {SCHEDULES}",
        ),
        (
            "lr_schedule",
            {"name": "exponential_decay", "initial_learning_rate": 0.1},
            "variants.baseline.lr_schedule.decay_steps: missing;"
            " variants.baseline.lr_schedule.decay_rate: missing",
        ),
        (
            "lr_schedule",
            {"name": "cosine_decay_restarts", "initial_learning_rate": 0.1, "decay_steps": 9},
            "variants.baseline.lr_schedule: unknown field(s) decay_steps; allowed: alpha,"
            " first_decay_steps, initial_learning_rate, m_mul, name, t_mul",
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
            "variants.baseline.presets: unknown preset 'nope'; allowed: dense64, regularized,"
            " thoracic_mlp",
        ),
        # `seeds`, the trainings of a variant (seed, seed+1, ...): a positive integer
        ("seeds", 0, "variants.baseline.seeds: must be > 0, got 0"),
        ("seeds", -2, "variants.baseline.seeds: must be > 0, got -2"),
        ("seeds", 1.5, "variants.baseline.seeds: must be an integer, got 1.5"),
        ("seeds", True, "variants.baseline.seeds: must be an integer, got True"),
        ("seeds", "2", "variants.baseline.seeds: must be an integer, got '2'"),
        ("seeds", None, "variants.baseline.seeds: must be an integer, got None"),
    ],
)  # fmt: skip
def test_bad_variant_fields_name_the_key(params, repo_params, tmp_path, field, value, message):
    """The same message from the whole file (load_params) and from one entry (resolve_entry,
    what Params.variant does)."""
    params["variants"]["baseline"][field] = value
    assert message in error(params, tmp_path)
    with pytest.raises(ConfigError) as err:
        resolve_entry(repo_params, params["variants"]["baseline"], "variants.baseline")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_plateau_and_schedule_exclude_each_other(params, tmp_path):
    # exp_decay has an lr_schedule (params.yaml): Keras could not set its optimizer's rate.
    params["variants"]["exp_decay"]["reduce_lr_on_plateau"] = {"factor": 0.5, "patience": 3}
    message = error(params, tmp_path)
    assert message.startswith("variants.exp_decay.reduce_lr_on_plateau: cannot be combined")
    params["variants"]["exp_decay"]["lr_schedule"] = None
    plateau = load(params, tmp_path).variant("exp_decay").reduce_lr_on_plateau
    assert plateau.model_dump(exclude_unset=True) == {"factor": 0.5, "patience": 3}


def test_unknown_field_lists_every_allowed_one_including_presets(params, tmp_path):
    params["variants"]["baseline"]["unitz"] = 3
    assert error(params, tmp_path) == (
        "variants.baseline: unknown field(s) unitz; allowed: activation, activity_l1,"
        " batch_size, class_weight, dataset, depth, dropout, epochs, kernel_l2, loss, lr_schedule,"
        " max_norm, optimizer, patience, presets, reduce_lr_on_plateau, seeds,"
        " steps_per_execution, units"
    )


def test_dropout_list_needs_one_rate_per_layer(params, tmp_path):
    params["variants"]["baseline"].update(depth=2, dropout=[0.5])
    assert error(params, tmp_path) == (
        "variants.baseline.dropout: a list needs one rate per hidden layer (depth 2), got 1"
    )
    params["variants"]["baseline"].update(dropout=[0.5, 1.5])
    assert error(params, tmp_path) == "variants.baseline.dropout[1]: must be < 1, got 1.5"


def test_thoracic_rejects_fashion_only_loss(params, tmp_path):
    params["variants"]["thoracic_bce"]["loss"] = "sparse_categorical_crossentropy"
    assert error(params, tmp_path).startswith(
        "variants.thoracic_bce.loss: unknown value 'sparse_categorical_crossentropy'; allowed:"
        " binary_crossentropy, categorical_crossentropy, mean_absolute_error,"
    )


def test_a_typo_in_the_last_variant_fails_before_any_training(params, tmp_path):
    params["variants"]["act_sigmoid"]["activation"] = "sigmiod"
    message = error(params, tmp_path)
    assert message == f"variants.act_sigmoid.activation: unknown value 'sigmiod'; {ACTIVATIONS}"


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("seed",), -1, "seed: must be >= 0, got -1"),
        (("train", "defaults", "seeds"), 0, "train.defaults.seeds: must be > 0, got 0"),
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
        (("compare", "dpi"), 100, "compare: unknown field(s) dpi; allowed: chart_dpi"),
        (
            ("mlflow_",),
            {},
            "params.yaml: unknown field(s) mlflow_; allowed: compare, crossval, deterministic,",
        ),
        # keys the restructure removed are errors, not silently ignored
        (("seeds",), {"repeats": 3}, "params.yaml: unknown field(s) seeds; allowed: compare,"),
        (
            ("crossval", "datasets"),
            ["thoracic"],
            "crossval: unknown field(s) datasets; allowed: folds, logistic, repeats, variants",
        ),
        (
            ("runner", "parallel", "commit_interval_s"),
            5,
            "runner.parallel: unknown field(s) commit_interval_s; allowed: cpus_per_stage,",
        ),
    ],
)
def test_every_section_is_checked_up_front(params, tmp_path, path, value, message):
    node = params
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    assert message in error(params, tmp_path)


def test_every_error_is_reported_in_one_line(params):
    params["seed"] = "42"
    del params["compare"]
    params["variants"]["baseline"]["epochs"] = 0
    with pytest.raises(ConfigError) as err:
        validate(Params, params, "")
    assert str(err.value) == (
        "seed: must be an integer, got '42'; variants.baseline.epochs: must be > 0, got 0;"
        " compare: missing"
    )


# params.yaml as plain data (study.config.raw)
def test_read_params_and_require(params, tmp_path):
    assert read_params() == params
    assert require(params, "crossval.logistic.C") == 1.0
    with pytest.raises(ConfigError, match=r"^params\.yaml: missing key 'crossval\.datasets'$"):
        require(params, "crossval.datasets")
    with pytest.raises(ConfigError, match=r"params\.yaml: params file not found$"):
        read_params(tmp_path)
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path)
    (tmp_path / "params.yaml").write_text("- a list\n")
    with pytest.raises(ConfigError, match=r"params\.yaml: expected a mapping at the top level$"):
        load_params(tmp_path)
