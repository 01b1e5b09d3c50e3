"""Each optimizer's first two steps against values computed by hand from its update rule."""

import math

import numpy as np
import pytest
from helpers import dev, host

from nnctl import optimizers

W0 = np.array([1.0, -2.0])
G1 = np.array([0.5, 0.1])
G2 = np.array([-0.2, 0.3])


def run(name, steps=(G1, G2), **kw):
    """The weights W0 after one step per host gradient in ``steps``, updated on the device; a host array."""
    opt = optimizers.get(name, **kw)
    w = dev(W0.copy())
    opt.init_slots(w.size, w.dtype)
    for g in steps:
        opt.step(w, dev(g.copy()))  # a copy: the step may clip it in place
    return host(w)


def test_sgd_plain():
    np.testing.assert_allclose(run("sgd", learning_rate=0.1), W0 - 0.1 * G1 - 0.1 * G2)


def test_sgd_momentum_and_nesterov():
    v1 = -0.1 * G1
    v2 = 0.9 * v1 - 0.1 * G2
    np.testing.assert_allclose(run("sgd", learning_rate=0.1, momentum=0.9), W0 + v1 + v2)
    w1 = W0 + 0.9 * v1 - 0.1 * G1
    w2 = w1 + 0.9 * v2 - 0.1 * G2
    np.testing.assert_allclose(run("sgd", learning_rate=0.1, momentum=0.9, nesterov=True), w2)


def test_rmsprop():
    s1 = 0.1 * G1**2
    w1 = W0 - 0.01 * G1 / (np.sqrt(s1) + 1e-7)
    s2 = 0.9 * s1 + 0.1 * G2**2
    w2 = w1 - 0.01 * G2 / (np.sqrt(s2) + 1e-7)
    np.testing.assert_allclose(run("rmsprop", learning_rate=0.01), w2)


def _adam(w, lr, wd=0.0):
    m = v = np.zeros(2)
    for t, g in enumerate((G1, G2), start=1):
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        lr_t = lr * math.sqrt(1 - 0.999**t) / (1 - 0.9**t)
        w = w * (1 - lr * wd) - lr_t * m / (np.sqrt(v) + 1e-7)
    return w


def test_adam_and_adamw():
    np.testing.assert_allclose(run("adam", learning_rate=0.01), _adam(W0, 0.01))
    np.testing.assert_allclose(run("adamw", learning_rate=0.01, weight_decay=0.1), _adam(W0, 0.01, 0.1))


def test_adagrad():
    s1 = 0.1 + G1**2
    w1 = W0 - 0.1 * G1 / (np.sqrt(s1) + 1e-7)
    s2 = s1 + G2**2
    np.testing.assert_allclose(run("adagrad", learning_rate=0.1), w1 - 0.1 * G2 / (np.sqrt(s2) + 1e-7))


def test_perceptron_is_sgd_with_unit_rate():
    np.testing.assert_allclose(run("perceptron"), W0 - G1 - G2)


def test_clipping():
    big = np.array([30.0, 40.0])  # norm 50
    w = run("sgd", steps=(big,), learning_rate=1.0, global_clipnorm=5.0)
    np.testing.assert_allclose(w, W0 - np.array([3.0, 4.0]))
    w = run("sgd", steps=(big,), learning_rate=1.0, clipvalue=1.0)
    np.testing.assert_allclose(w, W0 - np.array([1.0, 1.0]))


@pytest.mark.parametrize("name", optimizers.NAMES)
def test_float32_stays_float32(name):
    opt = optimizers.get(name)
    w = dev(np.ones(4, np.float32))
    opt.init_slots(4, np.float32)
    opt.step(w, dev(np.full(4, 0.5, np.float32)))
    assert w.dtype == np.float32 and all(s.dtype == np.float32 for s in opt.slots.values())
