"""study.training.model: the Keras model each variant describes."""

from __future__ import annotations

import keras
import numpy as np

from study.training.model import build_model, class_probabilities, encode_labels, make_optimizer

FASHION, THORACIC = (28, 28), (17,)  # the data's x.shape[1:]


def model_of(params, name):
    cfg = params.variant(name)
    return build_model(cfg, THORACIC if cfg.dataset.startswith("thoracic") else FASHION)


def layer_types(model):
    return [type(layer).__name__ for layer in model.layers]


def test_thoracic_mlp_is_the_seeds_network(study_params):
    model = model_of(study_params, "thoracic_msle")
    assert layer_types(model) == ["Dense", "Dropout", "Dense", "Dense"]
    assert [layer.units for layer in model.layers if hasattr(layer, "units")] == [30, 30, 1]
    assert model.layers[1].rate == 0.5
    assert model.layers[-1].activation.__name__ == "sigmoid"
    assert model.loss == "mean_squared_logarithmic_error"
    assert model.input_shape == (None, 17)


def test_categorical_crossentropy_gets_two_unit_softmax_and_one_hot(study_params):
    cfg = study_params.variant("thoracic_cce")
    model = build_model(cfg, THORACIC)
    assert model.layers[-1].units == 2
    assert model.layers[-1].activation.__name__ == "softmax"
    np.testing.assert_array_equal(encode_labels(np.array([0, 1]), cfg), [[1, 0], [0, 1]])
    probs = class_probabilities(np.array([[0.3, 0.7]]), cfg)
    np.testing.assert_allclose(probs, [[0.3, 0.7]])


def test_sigmoid_head_probabilities_have_two_columns(study_params):
    cfg = study_params.variant("thoracic_bce")
    np.testing.assert_allclose(class_probabilities(np.array([[0.8]]), cfg), [[0.2, 0.8]])
    assert encode_labels(np.array([1, 0]), cfg).shape == (2, 1)


def test_baseline_is_softmax_regression(study_params):
    model = model_of(study_params, "baseline")
    assert layer_types(model) == ["Flatten", "Dense"]
    assert model.layers[-1].units == 10
    assert model.input_shape == (None, 28, 28)


def test_dropout_variant_has_regularizers_constraint_and_dropout(study_params):
    model = model_of(study_params, "dropout")
    assert layer_types(model) == ["Flatten", "Dense", "Dropout", "Dense"]
    hidden = model.layers[1]
    assert isinstance(hidden.kernel_regularizer, keras.regularizers.L2)
    assert np.isclose(hidden.kernel_regularizer.l2, 0.01)
    assert isinstance(hidden.activity_regularizer, keras.regularizers.L1)
    assert isinstance(hidden.kernel_constraint, keras.constraints.MaxNorm)
    assert hidden.kernel_constraint.max_value == 2.0


def test_optimizer_betas_and_schedules_are_wired(study_params):
    adam = model_of(study_params, "adam_beta").optimizer
    assert np.isclose(adam.beta_1, 0.89) and np.isclose(float(adam.learning_rate), 0.001)
    cos = model_of(study_params, "cosine_restarts").optimizer
    sched = cos._learning_rate
    assert isinstance(sched, keras.optimizers.schedules.CosineDecayRestarts)
    assert sched.first_decay_steps == 1000 and sched.initial_learning_rate == 0.01
    exp = model_of(study_params, "exp_decay").optimizer._learning_rate
    assert isinstance(exp, keras.optimizers.schedules.ExponentialDecay)
    assert (exp.decay_steps, exp.decay_rate) == (10000, 0.9)


def test_a_schedule_without_initial_rate_starts_from_the_optimizers(variant):
    decay = {"name": "exponential_decay", "decay_steps": 10000, "decay_rate": 0.9}
    adam = {"name": "adam", "learning_rate": 0.0003}
    cfg = variant("exp_decay", lr_schedule=decay, optimizer=adam)
    assert make_optimizer(cfg)._learning_rate.initial_learning_rate == 0.0003
    sgd = variant("exp_decay", lr_schedule=decay, optimizer={"name": "sgd"})  # SGD's 0.01
    assert make_optimizer(sgd)._learning_rate.initial_learning_rate == 0.01
    own = {**decay, "initial_learning_rate": 0.05}  # a schedule's own rate wins
    own = variant("exp_decay", lr_schedule=own, optimizer={"name": "sgd"})
    assert make_optimizer(own)._learning_rate.initial_learning_rate == 0.05


def test_activation_variants_differ_only_in_activation(study_params):
    names = ["act_relu", "act_tanh", "act_leaky_relu", "act_sigmoid"]
    cfgs = [study_params.variant(n) for n in names]
    rest = [c.model_dump(exclude={"activation"}) for c in cfgs]
    assert all(r == rest[0] for r in rest)
    acts = [build_model(c, FASHION).layers[1].activation.__name__ for c in cfgs]
    assert acts == ["relu", "tanh", "leaky_relu", "sigmoid"]


def test_the_first_train_step_creates_no_variable(study_params, monkeypatch):
    """build_model builds the optimizer: a fit creates no variable inside its first traced
    step, which TF would otherwise trace again to lift them out (`initialize_variables`)."""
    from tensorflow.python.eager.polymorphic_function import tracing_compilation

    traced = []
    trace = tracing_compilation.trace_function

    def spy(args=None, kwargs=None, tracing_options=None):
        traced.append(getattr(tracing_options, "name", ""))
        return trace(args, kwargs, tracing_options)

    monkeypatch.setattr(tracing_compilation, "trace_function", spy)
    model = model_of(study_params, "thoracic_bce")
    assert model.optimizer.built and model.optimizer.variables
    x, y = np.zeros((8, 17), np.float32), np.zeros((8, 1), np.float32)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert "one_step_on_data" in traced and "initialize_variables" not in traced, traced
