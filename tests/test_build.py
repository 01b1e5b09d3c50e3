"""nnctl/build.py through its public functions: layer entries checked and named (``check_layers``), and
``build_model`` giving a wired Model whose float64 gradients over a graph with fan-out and a multi-output
layer match central finite differences of the whole model."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import layers_spec
from nnctl import backend as B
from nnctl.build import build_model, check_layers
from nnctl.errors import SpecError
from nnctl.spec_model import Spec


def _spec(layers: list, dtype: str = "float64") -> Spec:
    """A typed spec of named, checked layer entries and the dtype (what build_model reads), from test.toml."""
    entries, problems = check_layers([dict(e) for e in layers])
    assert not problems, problems
    return layers_spec(entries, dtype)


def _model(layers: list, input_shape, seed: int = 3, dtype: str = "float64", input_grad: bool = False):
    model = build_model(_spec(layers, dtype), input_shape, seed, input_grad=input_grad)
    model.to_device()
    return model


# LSTM(return_state) is multi-output: its sequence, h_T and c_T each feed other nodes, h_T two of them; the
# node ``h`` fans out to three consumers, and the model input to two (the LSTM and Flatten)
FAN_OUT = [
    {"type": "LSTM", "name": "enc", "units": 3, "return_sequences": True, "return_state": True},
    {"type": "GlobalAveragePooling1D", "name": "pool", "inputs": ["enc:0"]},
    {"type": "Dense", "name": "h", "units": 3, "activation": "tanh", "inputs": ["enc:1"]},
    {"type": "Dense", "name": "c", "units": 3, "activation": "sigmoid", "inputs": ["enc:2"]},
    {"type": "Add", "name": "sum", "inputs": ["pool", "h", "c", "enc:1"]},
    {"type": "Multiply", "name": "gate", "inputs": ["h", "sum"]},
    {"type": "Flatten", "name": "raw", "inputs": ["input"]},
    {"type": "Concatenate", "name": "cat", "inputs": ["gate", "h", "raw"]},
    {"type": "Dense", "name": "out", "units": 2},
]


def _loss(model, x, r) -> float:
    """L = sum(r * y): dL/dy = r, so backward(r) gives dL/dw and dL/dx."""
    return float(np.sum(r * B.to_numpy(model.forward(B.asarray(x), training=False))))


def test_model_gradients_with_fan_out_and_a_multi_output_layer_match_finite_differences():
    model = _model(FAN_OUT, (4, 2), input_grad=True)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4, 2))
    y = B.to_numpy(model.forward(B.asarray(x), training=False))
    assert y.shape == (3, 2) and model.output_shape == (2,)
    r = rng.normal(size=y.shape)
    dx = B.to_numpy(model.backward(B.asarray(r)))
    analytic = B.to_numpy(model.flat_grads).copy()
    assert analytic.size == sum(int(np.prod(p.shape)) for p in model.named_params().values())

    h = 1e-6
    flat = model.flat_params  # every layer's parameters are views of it: perturbing it perturbs them
    numeric = np.zeros(flat.size)
    for i in range(flat.size):
        old = float(flat[i])
        flat[i] = old + h
        up = _loss(model, x, r)
        flat[i] = old - h
        down = _loss(model, x, r)
        flat[i] = old
        numeric[i] = (up - down) / (2 * h)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)
    # every parameter took part (a node the wiring dropped would leave its slice zero)
    for name, sl in model.slices.items():
        assert np.abs(analytic[sl]).max() > 0, f"{name}: no gradient reached it"

    numeric_dx = np.zeros(x.size)
    xf = x.reshape(-1)
    for i in range(xf.size):
        old = xf[i]
        xf[i] = old + h
        up = _loss(model, x, r)
        xf[i] = old - h
        down = _loss(model, x, r)
        xf[i] = old
        numeric_dx[i] = (up - down) / (2 * h)
    # the input feeds the LSTM and Flatten: dL/dx is the sum over both paths
    np.testing.assert_allclose(dx.reshape(-1), numeric_dx, rtol=1e-6, atol=1e-8)


def test_backward_assigns_the_flat_gradients_it_does_not_accumulate_them():
    model = _model(FAN_OUT, (4, 2))
    rng = np.random.default_rng(1)
    x, r = B.asarray(rng.normal(size=(3, 4, 2))), B.asarray(rng.normal(size=(3, 2)))
    model.forward(x, training=False)
    model.backward(r)
    once = B.to_numpy(model.flat_grads).copy()
    model.forward(x, training=False)
    model.backward(r)
    np.testing.assert_array_equal(B.to_numpy(model.flat_grads), once)


def test_parameters_and_gradients_are_views_of_the_flat_buffers():
    model = _model(FAN_OUT, (4, 2))
    for node in model.nodes:
        for k, p in node.layer.params.items():
            assert np.shares_memory(p, model.flat_params), f"{node.name}/{k} is not a view of flat_params"
            assert np.shares_memory(node.layer.grads[k], model.flat_grads), f"{node.name}/{k}: grads not a view"
    model.flat_params[:] = 0.25  # one write to the buffer is seen by every layer
    assert all(np.all(v == 0.25) for v in model.named_params().values())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_spec_dtype_reaches_every_parameter_and_output(dtype):
    model = _model(FAN_OUT, (4, 2), dtype=dtype)
    assert model.flat_params.dtype == np.dtype(dtype) and model.flat_grads.dtype == np.dtype(dtype)
    assert {v.dtype for v in model.named_params().values()} == {np.dtype(dtype)}
    y = model.predict(np.zeros((5, 4, 2)), batch_size=2)
    assert isinstance(y, np.ndarray) and y.dtype == np.dtype(dtype) and y.shape == (5, 2)


def test_the_same_seed_draws_the_same_weights_and_another_seed_others():
    layers = [{"type": "Dense", "units": 4, "activation": "relu"}, {"type": "Dense", "units": 2}]
    a, b, c = (_model(layers, (3,), seed=s) for s in (5, 5, 6))
    np.testing.assert_array_equal(a.flat_params, b.flat_params)
    assert not np.array_equal(a.flat_params, c.flat_params)


def test_default_names_follow_keras_and_count_per_type():
    entries, problems = check_layers(
        [
            {"type": "Dense", "units": 2},
            {"type": "SimpleRNN", "units": 2},
            {"type": "dense", "units": 2},
            {"type": "GlobalAveragePooling1D"},
            {"type": "Dense", "units": 2, "name": "dense_2"},
            {"type": "Dense", "units": 2},
        ]
    )
    assert not problems
    assert [e["name"] for e in entries] == [
        "dense",
        "simple_rnn",
        "dense_1",
        "global_average_pooling1d",
        "dense_2",
        "dense_3",
    ]
    assert entries[2]["type"] == "Dense"  # the canonical type name is stored


@pytest.mark.parametrize(
    "layers, problem",
    [
        (
            [{"type": "Dense", "units": 2, "inputs": ["later"]}, {"type": "Dense", "units": 2, "name": "later"}],
            "comes later",
        ),
        ([{"type": "Dense", "units": 2, "inputs": ["nowhere"]}], "no such layer or model input"),
        ([{"type": "Dense", "units": 2, "name": "a"}, {"type": "Dense", "units": 2, "name": "a"}], "already used"),
        ([{"type": "Dense", "units": 2, "name": "input"}], "already used by the model input"),
        ([{"type": "Dense", "units": 2, "name": "a/b"}], "without ':' or '/'"),
        ([{"type": "Dense", "units": 0}], "units"),
        ([{"type": "Dense"}], "units"),
        ([{"type": "Dence", "units": 2}], "Dense"),  # the closest name is suggested
        ([{"units": 2}], "required key is missing"),
        ([], "at least one layer"),
    ],
)
def test_check_layers_reports_each_wiring_mistake(layers, problem):
    _, problems = check_layers(layers)
    assert problems and any(problem in p for p in problems), problems


def test_a_shape_mistake_names_the_layer_its_index_and_its_input_shape():
    layers = [{"type": "Dense", "units": 4}, {"type": "Conv2D", "filters": 2, "kernel_size": 3}]
    with pytest.raises(SpecError) as err:
        build_model(_spec(layers), (3,), 0)
    text = str(err.value)
    assert "test.toml: model.layers[1] (conv2d, Conv2D) on input shape [4]" in text


def test_data_defaults_fill_only_the_keys_a_layer_has_and_does_not_set():
    layers = [
        {"type": "Embedding", "output_dim": 2},
        {"type": "Embedding", "output_dim": 2, "input_dim": 9, "inputs": ["input"]},
        {"type": "Concatenate", "inputs": ["embedding", "embedding_1"]},
        {"type": "Flatten"},
        {"type": "Dense", "units": 1},
    ]
    model = build_model(_spec(layers), (3,), 0, defaults={"input_dim": 7}, input_dtype="int64")
    shapes = {k: tuple(v.shape) for k, v in model.named_params().items()}
    assert shapes["embedding/embeddings"] == (7, 2)  # from the data (the tokenizer's vocabulary)
    assert shapes["embedding_1/embeddings"] == (9, 2)  # the spec's own value wins
    assert "input_dim" not in model.by_name["dense"].layer.get_config()
