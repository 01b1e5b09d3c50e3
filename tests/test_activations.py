"""Activations added for Keras parity: values against the definitions written with ``math`` (and PyTorch
where installed), float64 derivatives against central differences, and the erfc series against math.erfc."""

import math

import numpy as np
import pytest

from helpers import dev, host
from nnctl.layers import layer_class
from nnctl.ops import activation_fns, activations
from nnctl.testing import check_layer

SELU_A, SELU_S = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


def _softplus(v):
    return max(v, 0.0) + math.log1p(math.exp(-abs(v)))


def _relu6(v):
    return min(max(v, 0.0), 6.0)


# the definitions, one scalar at a time
SCALAR = {
    "gelu": lambda v: 0.5 * v * math.erfc(-v / math.sqrt(2)),  # = x (1 + erf(x / sqrt 2)) / 2, no cancellation
    "gelu_tanh": lambda v: 0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v**3))),
    "silu": lambda v: v / (1 + math.exp(-v)),
    "selu": lambda v: SELU_S * (v if v > 0 else SELU_A * math.expm1(v)),
    "relu6": _relu6,
    "hard_sigmoid": lambda v: _relu6(v + 3) / 6,
    "hard_silu": lambda v: v * _relu6(v + 3) / 6,
    "hard_swish": lambda v: v * _relu6(v + 3) / 6,
    "mish": lambda v: v * math.tanh(_softplus(v)),
    "softsign": lambda v: v / (1 + abs(v)),
    "exponential": math.exp,
}
NEW = [*SCALAR, "log_softmax"]
X = np.concatenate([np.linspace(-9, 9, 181), [-40.0, -7.5, -1e-9, 0.0, 1e-9, 5.9, 6.1, 30.0]])


def _apply(name, x):
    fn = activations.get(name)
    return host(fn.forward(dev(x)))


@pytest.mark.parametrize("name", list(SCALAR))
def test_values_match_the_definition(name):
    want = np.array([SCALAR[name](v) for v in X])
    # gelu_tanh computes 1 + tanh(...), which cancels for x << 0: absolute accuracy only there
    np.testing.assert_allclose(_apply(name, X), want, rtol=1e-13, atol=1e-15 if name == "gelu_tanh" else 1e-300)


def test_log_softmax_matches_the_definition_and_stays_finite():
    x = np.array([[1.0, 2.0, 3.0], [1000.0, 0.0, -1000.0]])
    want = [[v - math.log(sum(math.exp(u) for u in x[0])) for v in x[0]], [0.0, -1000.0, -2000.0]]
    np.testing.assert_allclose(_apply("log_softmax", x), want, rtol=1e-14)


@pytest.mark.parametrize("name", NEW)
def test_derivatives_match_finite_differences(name):
    # spread inputs: the kinks of relu6 / hard_sigmoid (0, +-3, 6) are met with probability zero
    layer = layer_class("Activation")(name="a", activation=name)
    check_layer(layer, [(4, 7)], seed=3)
    layer = layer_class("Activation")(name="a", activation=name)
    check_layer(layer, [(3, 2, 5)], seed=4)


def test_derivatives_on_wide_inputs():
    rng = np.random.default_rng(0)
    x = rng.uniform(-8, 8, size=400)
    h = 1e-6
    for name in NEW:
        fn = activations.get(name)
        xd = dev(x[None])
        y = fn.forward(xd)
        analytic = host(fn.backward(xd, y, dev(np.ones((1, 400)))))[0] if name != "log_softmax" else None
        if analytic is None:
            continue
        numeric = (_apply(name, x + h) - _apply(name, x - h)) / (2 * h)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-6, err_msg=name)


def test_erfc_series_against_math():
    z = np.concatenate([np.linspace(0, 26, 5201), np.geomspace(1e-12, 1, 50)])
    want = np.array([math.erfc(v) for v in z])
    got = host(activation_fns.erfc_nonnegative(dev(z)))
    rel = np.abs(got - want) / want
    assert rel[z < 6].max() < 5e-14, rel[z < 6].max()
    assert rel.max() < 1e-12  # beyond, exp(-z^2) carries the rounding of z^2 (relative z^2 * 1e-16)
    assert host(activation_fns.erfc_nonnegative(dev(np.array([40.0, np.inf])))).tolist() == [0.0, 0.0]


def test_float32_stays_float32():
    x = np.linspace(-5, 5, 11, dtype=np.float32)[None]
    for name in NEW:
        fn = activations.get(name)
        y = fn.forward(dev(x))
        dy = fn.backward(dev(x), y, dev(np.ones_like(x)))
        assert host(y).dtype == np.float32 and host(dy).dtype == np.float32, name


def test_gelu_is_the_exact_form_and_gelu_tanh_the_approximation():
    x = np.array([-3.0, -1.0, 0.5, 2.0])
    exact = [0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x]  # no cancellation at these x
    np.testing.assert_allclose(_apply("gelu", x), exact, rtol=1e-14)
    assert np.abs(_apply("gelu_tanh", x) - exact).max() > 1e-5  # the two differ, so the names matter
    assert activations.get("swish").forward(dev(x)).tolist() == activations.get("silu").forward(dev(x)).tolist()


@pytest.mark.torch
def test_activations_match_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    refs = {
        "gelu": lambda t: F.gelu(t),
        "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"),
        "silu": F.silu,
        "selu": F.selu,
        "relu6": F.relu6,
        "hard_sigmoid": F.hardsigmoid,
        "hard_silu": F.hardswish,
        "mish": F.mish,
        "softsign": F.softsign,
        "exponential": torch.exp,
        "log_softmax": lambda t: F.log_softmax(t, dim=-1),
    }
    rng = np.random.default_rng(1)
    x = rng.normal(0, 3, size=(6, 9))
    g = rng.normal(size=x.shape)
    for name, ref in refs.items():
        fn = activations.get(name)
        y = fn.forward(dev(x))
        dx = host(fn.backward(dev(x), y, dev(g)))
        xt = torch.tensor(x, requires_grad=True)
        yt = ref(xt)
        (yt * torch.tensor(g)).sum().backward()
        np.testing.assert_allclose(host(y), yt.detach().numpy(), rtol=1e-12, atol=1e-14, err_msg=name)
        # torch's float64 hardsigmoid backward multiplies by a float32 1/6 (0.1666666716...)
        rtol = 1e-7 if name == "hard_sigmoid" else 1e-10
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=rtol, atol=1e-12, err_msg=name)
