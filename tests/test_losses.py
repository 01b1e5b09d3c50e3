"""Every registered loss: float64 gradient against central differences, fused (logit) forms against the
unfused composition, and no NaN on saturated outputs."""

import numpy as np
import pytest
from helpers import dev, host

from nnctl import losses
from nnctl.ops.activations import sigmoid, softmax

RNG = np.random.default_rng(0)
N, K = 5, 4


def _targets(loss, p):
    if loss.target == "sparse":
        return RNG.integers(0, K, size=p.shape[:-1]).astype(np.float64)
    if loss.target == "binary":
        return RNG.integers(0, 2, size=p.shape).astype(np.float64)
    if isinstance(loss, (losses.CategoricalCrossentropy, losses.KLDivergence)):
        return host(softmax(dev(RNG.normal(size=p.shape))))
    return RNG.normal(size=p.shape)


def _prediction(loss, shape):
    """A host prediction array (softmax/sigmoid computed by nnctl on the device)."""
    if isinstance(loss, (losses.CategoricalCrossentropy, losses.SparseCategoricalCrossentropy, losses.KLDivergence)):
        return host(softmax(dev(RNG.normal(size=shape))))
    if isinstance(loss, losses.BinaryCrossentropy):
        return host(sigmoid(dev(RNG.normal(size=shape))))
    return RNG.normal(size=shape) + 0.05  # keep hinge/mae kinks away from the sample points


def _numeric_grad(f, p, h=1e-6):
    """Central differences of the scalar f (called with the host array p) at p, on the host."""
    g = np.zeros_like(p)
    for i in np.ndindex(p.shape):
        old = p[i]
        p[i] = old + h
        fp = f(p)
        p[i] = old - h
        fm = f(p)
        p[i] = old
        g[i] = (fp - fm) / (2 * h)
    return g


UNFUSED = [n for n in losses.NAMES if n != "perceptron"]


@pytest.mark.parametrize("name", UNFUSED)
@pytest.mark.parametrize("shape", [(N, K), (2, 3, K)])
def test_loss_gradient_matches_finite_differences(name, shape):
    loss = losses.get(name)
    p = _prediction(loss, shape)
    y = _targets(loss, p)
    yd = dev(y)
    num = _numeric_grad(lambda q: float(host(loss.value(dev(q), yd))), p.copy())
    np.testing.assert_allclose(host(loss.grad(dev(p), yd)), num, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("name", [n for n in losses.NAMES if losses.get(n).fused and n != "perceptron"])
def test_fused_loss_equals_composition_and_its_gradient(name):
    loss = losses.get(name)
    act = next(iter(loss.fused))
    f = softmax if act == "softmax" else sigmoid
    z = RNG.normal(size=(N, K if act == "softmax" else 1))
    y = _targets(loss, z)
    zd, yd = dev(z), dev(y)
    value, grad = host(loss.fused_value_grad(zd, yd, act))
    np.testing.assert_allclose(value, host(loss.value(f(zd), yd)), rtol=1e-10)
    num = _numeric_grad(lambda q: float(host(loss.fused_value_grad(dev(q), yd, act)[0])), z.copy())
    np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-8)


def test_fused_cross_entropy_is_finite_on_saturated_logits():
    z = np.array([[1000.0, -1000.0, 0.0], [-800.0, 800.0, 5.0]])
    y = np.eye(3)[[1, 0]]
    value, grad = host(losses.get("categorical_crossentropy").fused_value_grad(dev(z), dev(y), "softmax"))
    assert np.isfinite(value) and np.isfinite(grad).all()
    assert value == pytest.approx((2000.0 + 1600.0) / 2)  # -log softmax = gap to the max logit
    zb = np.array([[1000.0], [-1000.0]])
    vb, gb = host(losses.get("binary_crossentropy").fused_value_grad(dev(zb), dev([[0.0], [1.0]]), "sigmoid"))
    assert vb == pytest.approx(1000.0) and np.isfinite(gb).all()


def test_perceptron_loss_gradient_is_the_perceptron_rule():
    z = np.array([[0.5], [-0.2], [0.3], [-1.0]])
    y = np.array([[1.0], [1.0], [0.0], [0.0]])
    _, grad = host(losses.get("perceptron").fused_value_grad(dev(z), dev(y), "step"))
    # step(z) - y per sample, averaged: wrong ones are samples 2 (step 0, y 1) and 3 (step 1, y 0)
    np.testing.assert_allclose(grad, np.array([[0.0], [-1.0], [1.0], [0.0]]) / 4)


def test_every_loss_is_checked():
    checked = set(UNFUSED) | {"perceptron"}
    assert checked == set(losses.NAMES)
