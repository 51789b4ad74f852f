"""stages.model: the Keras model each variant describes."""

from __future__ import annotations

import keras
import numpy as np

from stages.model import build_model, class_probabilities, encode_labels, make_optimizer
from stages.params import resolve_variant


def layer_types(model):
    return [type(layer).__name__ for layer in model.layers]


def test_thoracic_mlp_is_the_seeds_network(params):
    model = build_model(resolve_variant(params, "thoracic_msle"))
    assert layer_types(model) == ["Dense", "Dropout", "Dense", "Dense"]
    assert [layer.units for layer in model.layers if hasattr(layer, "units")] == [30, 30, 1]
    assert model.layers[1].rate == 0.5
    assert model.layers[-1].activation.__name__ == "sigmoid"
    assert model.loss == "mean_squared_logarithmic_error"


def test_categorical_crossentropy_gets_two_unit_softmax_and_one_hot(params):
    cfg = resolve_variant(params, "thoracic_cce")
    model = build_model(cfg)
    assert model.layers[-1].units == 2
    assert model.layers[-1].activation.__name__ == "softmax"
    np.testing.assert_array_equal(encode_labels(np.array([0, 1]), cfg), [[1, 0], [0, 1]])
    probs = class_probabilities(np.array([[0.3, 0.7]]), cfg)
    np.testing.assert_allclose(probs, [[0.3, 0.7]])


def test_sigmoid_head_probabilities_have_two_columns(params):
    cfg = resolve_variant(params, "thoracic_bce")
    np.testing.assert_allclose(class_probabilities(np.array([[0.8]]), cfg), [[0.2, 0.8]])
    assert encode_labels(np.array([1, 0]), cfg).shape == (2, 1)


def test_baseline_is_softmax_regression(params):
    model = build_model(resolve_variant(params, "baseline"))
    assert layer_types(model) == ["Flatten", "Dense"]
    assert model.layers[-1].units == 10


def test_dropout_variant_has_regularizers_constraint_and_dropout(params):
    model = build_model(resolve_variant(params, "dropout"))
    assert layer_types(model) == ["Flatten", "Dense", "Dropout", "Dense"]
    hidden = model.layers[1]
    assert isinstance(hidden.kernel_regularizer, keras.regularizers.L2)
    assert np.isclose(hidden.kernel_regularizer.l2, 0.01)
    assert isinstance(hidden.activity_regularizer, keras.regularizers.L1)
    assert isinstance(hidden.kernel_constraint, keras.constraints.MaxNorm)
    assert hidden.kernel_constraint.max_value == 2.0


def test_optimizer_betas_and_schedules_are_wired(params):
    adam = build_model(resolve_variant(params, "adam_beta")).optimizer
    assert np.isclose(adam.beta_1, 0.89) and np.isclose(float(adam.learning_rate), 0.001)
    cos = build_model(resolve_variant(params, "cosine_restarts")).optimizer
    sched = cos._learning_rate
    assert isinstance(sched, keras.optimizers.schedules.CosineDecayRestarts)
    assert sched.first_decay_steps == 1000 and sched.initial_learning_rate == 0.01
    exp = build_model(resolve_variant(params, "exp_decay")).optimizer._learning_rate
    assert isinstance(exp, keras.optimizers.schedules.ExponentialDecay)
    assert (exp.decay_steps, exp.decay_rate) == (10000, 0.9)


def test_a_schedule_without_initial_rate_starts_from_the_optimizers(params):
    cfg = resolve_variant(params, "exp_decay")
    del cfg["lr_schedule"]["initial_learning_rate"]
    cfg["optimizer"] = {"name": "adam", "learning_rate": 0.0003}
    assert make_optimizer(cfg)._learning_rate.initial_learning_rate == 0.0003
    cfg["optimizer"] = {"name": "sgd"}  # no rate of its own: SGD's default, 0.01
    assert make_optimizer(cfg)._learning_rate.initial_learning_rate == 0.01
    cfg["lr_schedule"]["initial_learning_rate"] = 0.05  # a schedule's own rate wins
    assert make_optimizer(cfg)._learning_rate.initial_learning_rate == 0.05


def test_activation_variants_differ_only_in_activation(params):
    names = ["act_relu", "act_tanh", "act_leaky_relu", "act_sigmoid"]
    cfgs = [resolve_variant(params, n) for n in names]
    assert all({k: v for k, v in c.items() if k != "activation"} == {
        k: v for k, v in cfgs[0].items() if k != "activation"
    } for c in cfgs)  # fmt: skip
    acts = [build_model(c).layers[1].activation.__name__ for c in cfgs]
    assert acts == ["relu", "tanh", "leaky_relu", "sigmoid"]
