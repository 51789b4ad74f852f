"""study.config.params' variants (and study.config.variant's model): merging
defaults/presets/variant fields, seeds, the resolved config's dump, each variant's own
dataset, the searched variant (search/best.yaml, search.variant) and the cross-file rules of
crossval.variants. The whole file's validation and messages are test_params'."""

from __future__ import annotations

import pytest
import yaml
from params_files import DATASETS, error, load

from study.config.errors import ConfigError
from study.config.params import Params, load_params, merge
from study.config.variant import Optimizer, Variant

SEED_VARIANTS = [
    "thoracic_msle", "thoracic_mse", "thoracic_mae", "thoracic_mape", "thoracic_bce",
    "thoracic_poisson", "thoracic_cce", "baseline", "weight_decay", "constraint", "dropout",
    "adam_beta", "exp_decay", "cosine_restarts", "act_relu", "act_tanh", "act_leaky_relu",
    "act_sigmoid",
]  # fmt: skip
# Issue 10: the thoracic network on cleaned features, unweighted and class-weighted.
CLEAN_VARIANTS = ["thoracic_bce_clean", "thoracic_bce_clean_balanced"]


@pytest.fixture(scope="module")
def repo_params() -> Params:
    """The repository's params.yaml, validated."""
    return load_params()


def test_default_params_define_every_seed_variant(repo_params):
    names = list(repo_params.variants)
    assert [n for n in names if n in SEED_VARIANTS] == SEED_VARIANTS
    assert sorted(names) == sorted(SEED_VARIANTS + CLEAN_VARIANTS)
    assert repo_params.study_variants() == [*names, "searched"]  # the searched one last
    seed_thoracic = [n for n in SEED_VARIANTS if n.startswith("thoracic")]
    assert {repo_params.variant(n).dataset for n in seed_thoracic} == {"thoracic"}
    assert {repo_params.variant(n).dataset for n in CLEAN_VARIANTS} == {"thoracic_clean"}
    # one training per variant unless it says otherwise (train.defaults.seeds)
    assert {repo_params.variant(n).seeds for n in names} == {1}


def test_merge_order_defaults_then_presets_then_variant(repo_params, params):
    cfg = repo_params.variant("adam_beta")
    assert isinstance(cfg, Variant)
    assert cfg.depth == 1 and cfg.units == 64  # preset
    assert cfg.kernel_l2 == 0.01 and cfg.max_norm == 2.0 and cfg.dropout == 0.5
    # nested mapping merges key by key: only beta_1 is overridden
    assert cfg.optimizer == Optimizer(name="adam", learning_rate=0.001, beta_1=0.89, beta_2=0.999)
    assert cfg.epochs == params["train"]["defaults"]["epochs"]
    assert repo_params.variant("adam_beta") is cfg  # resolved once


def test_seed_regularization_ladder(repo_params):
    wd, con, drop = map(repo_params.variant, ("weight_decay", "constraint", "dropout"))
    assert (wd.max_norm, wd.dropout) == (None, 0.0)
    assert (con.max_norm, con.dropout) == (2.0, 0.0)
    assert (drop.max_norm, drop.dropout) == (2.0, 0.5)
    assert repo_params.variant("cosine_restarts").lr_schedule.name == "cosine_decay_restarts"


def test_thoracic_mlp_matches_the_seed(repo_params):
    cfg = repo_params.variant("thoracic_msle")
    assert (cfg.depth, cfg.units, cfg.dropout) == (2, 30, [0.5, 0.0])
    assert cfg.loss == "mean_squared_logarithmic_error"
    assert (cfg.epochs, cfg.batch_size) == (30, 30)


def test_merge_is_recursive_and_copies():
    base = {"a": 1, "opt": {"name": "adam", "beta_1": 0.9}, "rates": [0.5, 0.0]}
    over = {"opt": {"beta_1": 0.8}, "rates": [0.1], "b": {"c": 2}}
    out = merge(base, over)
    assert out == {"a": 1, "opt": {"name": "adam", "beta_1": 0.8}, "rates": [0.1], "b": {"c": 2}}
    out["opt"]["name"], out["b"]["c"] = "sgd", 3  # a copy: the inputs stay as they were
    assert base["opt"]["name"] == "adam" and over["b"] == {"c": 2}
    assert merge(base, {"opt": None})["opt"] is None  # a non-mapping replaces a mapping


def test_seeds_is_a_variant_field_merged_like_the_others(params, tmp_path):
    params["train"]["defaults"]["seeds"] = 2
    params["train"]["presets"]["dense64"]["seeds"] = 3
    params["variants"]["baseline"]["seeds"] = 4
    loaded = load(params, tmp_path)
    assert loaded.variant("baseline").seeds == 4  # its own
    assert loaded.variant("act_relu").seeds == 3  # its preset's
    assert loaded.variant("dropout").seeds == 2  # train.defaults'
    del params["train"]["defaults"]["seeds"]
    assert error(params, tmp_path).startswith("variants.thoracic_msle.seeds: missing")


def test_a_loss_from_defaults_is_checked_against_the_variants_dataset(params, tmp_path):
    """The default loss is fashion's; a thoracic variant must override it (its preset does)."""
    params["variants"]["thoracic_bce"] = {"dataset": "thoracic"}
    params["crossval"]["variants"]["thoracic"].remove("thoracic_bce")
    assert error(params, tmp_path).startswith(
        "variants.thoracic_bce.loss: unknown value 'sparse_categorical_crossentropy'"
    )


def test_a_resolved_config_dumps_without_unset_optional_fields(repo_params, params):
    """What train.json, the tags and the resume key record: the fields the variant has."""
    cfg = repo_params.variant("exp_decay")
    dumped = cfg.model_dump(exclude_unset=True)
    assert dumped["lr_schedule"] == {
        "name": "exponential_decay",
        "initial_learning_rate": 0.01,
        "decay_steps": 10000,
        "decay_rate": 0.9,
    }
    assert dumped["optimizer"] == {
        "name": "adam",
        "learning_rate": 0.001,
        "beta_1": 0.9,
        "beta_2": 0.999,
    }
    assert "class_weight" not in dumped and dumped["seeds"] == 1
    assert dumped["dataset"] == "fashion_mnist"  # merged config keeps the variant's own dataset
    assert set(dumped) == set(Variant.model_fields) - {"class_weight"}
    # resolved from copies: changing it leaves train.defaults alone
    assert cfg.optimizer is not repo_params.train.defaults.optimizer
    dumped["optimizer"]["beta_1"] = 0.5
    assert repo_params.train.defaults.optimizer.beta_1 == 0.9
    assert params["train"]["defaults"]["optimizer"]["beta_1"] == 0.9


def test_unknown_variant_lists_defined_ones(repo_params):
    with pytest.raises(ConfigError) as err:
        repo_params.variant("nope")
    assert str(err.value).startswith("variants: unknown variant 'nope'; defined: act_leaky_relu,")
    assert str(err.value).endswith(", searched, thoracic_bce, thoracic_bce_clean,"
                                   " thoracic_bce_clean_balanced, thoracic_cce, thoracic_mae,"
                                   " thoracic_mape, thoracic_mse, thoracic_msle, thoracic_poisson,"
                                   " weight_decay")  # fmt: skip


def test_every_variant_states_its_dataset_itself(params):
    """dvc.yaml picks each variant's data files with ${item.dataset}, which sees only the
    fields a variant spells out: a dataset inherited from defaults or a preset is invisible."""
    assert "dataset" not in params["train"]["defaults"]
    assert not any("dataset" in preset for preset in params["train"]["presets"].values())
    assert all("dataset" in own for own in params["variants"].values())


def test_a_variant_without_its_own_dataset_fails_with_one_clear_message(params, tmp_path):
    params["variants"]["thoracic_bce"].pop("dataset", None)
    params["train"]["presets"]["thoracic_mlp"]["dataset"] = "thoracic"  # not enough
    message = error(params, tmp_path)
    assert message.startswith("variants.thoracic_bce.dataset: missing")
    assert "dvc.yaml" in message and DATASETS in message


# The searched variant: search/best.yaml, under search.variant's name.
def test_the_searched_variant_is_search_best_merged_over_the_defaults(params, tmp_path):
    loaded = load(params, tmp_path)  # the search has not run: load_params does not need it
    with pytest.raises(ConfigError, match=r"search/best\.yaml: not found; run `dvc repro search`"):
        loaded.variant("searched")
    (tmp_path / "search").mkdir()
    best = {"dataset": "fashion_mnist", "depth": 2, "units": 256, "optimizer": {"beta_1": 0.8}}
    (tmp_path / "search" / "best.yaml").write_text(yaml.safe_dump({**best, "epochs": 60}))
    cfg = loaded.variant("searched")
    assert (cfg.depth, cfg.units, cfg.epochs, cfg.seeds) == (2, 256, 60, 1)
    assert (cfg.optimizer.beta_1, cfg.optimizer.learning_rate) == (0.8, 0.001)
    (tmp_path / "search" / "best.yaml").write_text(yaml.safe_dump({**best, "units": 0}))
    with pytest.raises(ConfigError, match=r"^search/best\.yaml\.units: must be > 0, got 0$"):
        load_params(tmp_path).variant("searched")


def test_search_variant_may_not_be_a_key_of_variants(params, tmp_path):
    params["search"]["variant"] = "baseline"
    assert error(params, tmp_path) == (
        "search.variant: 'baseline' is a key of variants; the searched variant needs a name of"
        " its own"
    )


# crossval.variants: the cross-validated variants, under the (binary) dataset they belong to.
def test_crossval_variants_are_listed_under_their_dataset(params, tmp_path):
    crossval = load(params, tmp_path).crossval.variants
    assert crossval == params["crossval"]["variants"]
    assert set(crossval) == {"thoracic", "thoracic_clean"}
    params["crossval"]["variants"] = {"thoracic": [], "thoracic_clean": []}  # none: fine
    assert load(params, tmp_path).crossval.variants == {"thoracic": [], "thoracic_clean": []}


@pytest.mark.parametrize(
    ("dataset", "listed", "message"),
    [
        (
            "thoracic",
            ["thoracic_bce", "thoracic_bce_clean"],
            "crossval.variants.thoracic: 'thoracic_bce_clean' is a variant of thoracic_clean;"
            " list it under crossval.variants.thoracic_clean",
        ),
        (
            "thoracic_clean",
            ["thoracic_mse"],
            "crossval.variants.thoracic_clean: 'thoracic_mse' is a variant of thoracic; list it"
            " under crossval.variants.thoracic",
        ),
        (
            "thoracic",
            ["baseline"],
            "crossval.variants.thoracic: 'baseline' is a variant of fashion_mnist; only variants"
            " of the binary datasets (thoracic, thoracic_clean) are cross-validated",
        ),
        (
            "thoracic",
            ["thoracic_bce", "nope"],
            "crossval.variants.thoracic: unknown variant 'nope'; defined: act_leaky_relu,",
        ),
        (
            "thoracic",
            ["searched"],  # trained from search/best.yaml, never cross-validated
            "crossval.variants.thoracic: unknown variant 'searched'; defined: act_leaky_relu,",
        ),
        (
            "thoracic",
            ["thoracic_bce", "thoracic_mse", "thoracic_bce"],
            "crossval.variants.thoracic: a variant is listed twice: ['thoracic_bce',"
            " 'thoracic_mse', 'thoracic_bce']",
        ),
        (
            "fashion_mnist",
            ["baseline"],
            "crossval.variants.fashion_mnist: unknown value 'fashion_mnist'; allowed: thoracic,"
            " thoracic_clean",
        ),
        ("thoracic", "thoracic_bce", "crossval.variants.thoracic: must be a list, got"),
    ],
)
def test_a_crossval_variant_of_another_dataset_names_key_and_variant(
    params, tmp_path, dataset, listed, message
):
    params["crossval"]["variants"][dataset] = listed
    assert error(params, tmp_path).startswith(message)


@pytest.mark.parametrize("dataset", ["thoracic", "thoracic_clean"])
def test_crossval_variants_needs_both_binary_datasets(params, tmp_path, dataset):
    """dvc.yaml has one crossval stage per binary dataset, each over its list."""
    del params["crossval"]["variants"][dataset]
    assert error(params, tmp_path) == (
        f"crossval.variants: missing {dataset} (an empty list [] for none)"
    )
