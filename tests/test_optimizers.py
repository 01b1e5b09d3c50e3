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


# -- Nadam, Adamax, Adadelta against PyTorch; Lion and Ftrl against their formulas ------------------------
STEPS = [
    np.array([0.5, 0.1, -1.5]),
    np.array([-0.2, 0.3, 0.7]),
    np.array([0.05, -0.4, 1.1]),
    np.array([0.3, 0.3, -0.6]),
]
W3 = np.array([1.0, -2.0, 0.25])


def run3(name, **kw):
    opt = optimizers.get(name, **kw)
    w = dev(W3.copy())
    opt.init_slots(w.size, w.dtype)
    out = []
    for g in STEPS:
        opt.step(w, dev(g.copy()))
        out.append(host(w).copy())
    return np.array(out)


def torch_steps(make):
    torch = pytest.importorskip("torch")
    w = torch.tensor(W3.copy(), requires_grad=True)
    opt = make(torch, [w])
    out = []
    for g in STEPS:
        w.grad = torch.tensor(g.copy())
        opt.step()
        out.append(w.detach().numpy().copy())
    return np.array(out)


@pytest.mark.torch
def test_nadam_against_pytorch():
    # Keras's momentum schedule is torch's with momentum_decay = 1 (0.96^t rather than 0.96^(0.004 t))
    # (torch keeps the product of the mu_t as a float32 scalar, hence 1e-8 rather than float64 rounding)
    ref = torch_steps(lambda t, p: t.optim.NAdam(p, lr=0.01, betas=(0.9, 0.999), eps=1e-7, momentum_decay=1.0))
    np.testing.assert_allclose(run3("nadam", learning_rate=0.01), ref, rtol=1e-8)


@pytest.mark.torch
def test_adamax_against_pytorch():
    # torch adds eps inside the max (max(b2 u, |g| + eps)), Keras outside (u + eps): equal as eps -> 0
    ref = torch_steps(lambda t, p: t.optim.Adamax(p, lr=0.01, betas=(0.9, 0.999), eps=1e-14))
    np.testing.assert_allclose(run3("adamax", learning_rate=0.01, epsilon=1e-14), ref, rtol=1e-12)


@pytest.mark.torch
def test_adadelta_against_pytorch():
    ref = torch_steps(lambda t, p: t.optim.Adadelta(p, lr=1.0, rho=0.95, eps=1e-7))
    np.testing.assert_allclose(run3("adadelta", learning_rate=1.0), ref, rtol=1e-12)


def test_adamax_by_hand():
    m1, u1 = 0.1 * G1, np.abs(G1)
    w1 = W0 - 0.1 / (1 - 0.9) * m1 / (u1 + 1e-7)
    m2, u2 = 0.9 * m1 + 0.1 * G2, np.maximum(0.999 * u1, np.abs(G2))
    np.testing.assert_allclose(run("adamax", learning_rate=0.1), w1 - 0.1 / (1 - 0.81) * m2 / (u2 + 1e-7))


def test_lion_by_hand():
    # m starts at 0: the first step is lr sign(0.1 g1); then m = 0.01 g1
    w1 = W0 - 0.1 * np.sign(0.1 * G1)
    m1 = 0.01 * G1
    w2 = w1 - 0.1 * np.sign(0.9 * m1 + 0.1 * G2)
    np.testing.assert_allclose(run("lion", learning_rate=0.1), w2)
    wd = run("lion", steps=(G1,), learning_rate=0.1, weight_decay=0.5)
    np.testing.assert_allclose(wd, W0 * (1 - 0.05) - 0.1 * np.sign(G1))


def test_ftrl_by_hand():
    lr, l1, l2 = 0.1, 0.05, 0.01
    n, z, w = np.full(2, 0.1), np.zeros(2), W0.copy()
    for g in (G1, G2):
        new_n = n + g * g
        z = z + g - (np.sqrt(new_n) - np.sqrt(n)) / lr * w
        w = (np.clip(z, -l1, l1) - z) / (np.sqrt(new_n) / lr + 2 * l2)
        n = new_n
    got = run("ftrl", learning_rate=lr, l1_regularization_strength=l1, l2_regularization_strength=l2)
    np.testing.assert_allclose(got, w)
    # with l1 large enough every |z| stays under it: the weights go to exactly 0 (FTRL's sparsity)
    np.testing.assert_array_equal(run("ftrl", learning_rate=lr, l1_regularization_strength=100.0), 0.0)


def test_ema_of_weights_follows_keras():
    opt = optimizers.get("sgd", learning_rate=0.1, use_ema=True, ema_momentum=0.9)
    w = dev(W0.copy())
    opt.init_slots(w.size, w.dtype)
    assert opt.ema_weights(w) is w  # before any step the average is the weights
    opt.step(w, dev(G1.copy()))
    w1 = W0 - 0.1 * G1
    np.testing.assert_allclose(host(opt.ema_weights(w)), w1)  # the first step copies the weights
    opt.step(w, dev(G2.copy()))
    w2 = w1 - 0.1 * G2
    np.testing.assert_allclose(host(opt.ema_weights(w)), 0.9 * w1 + 0.1 * w2)
    np.testing.assert_allclose(host(w), w2)  # training goes on from the raw weights
    assert "ema" in opt.slots  # saved and restored with the other slots


def test_use_ema_saves_the_average_and_resumes_exactly(tmp_path):
    """The checkpoint's weights are the moving average (the ``ema`` slot); --resume continues the raw weights."""
    import os
    import signal

    from helpers import load_spec
    from nnctl import run
    from nnctl.checkpoint import Checkpoint
    from nnctl.errors import Interrupted

    opts = [
        "data.subset=200",
        'train.optimizer={type = "adam", learning_rate = 0.01, use_ema = true, ema_momentum = 0.9}',
        "train.epochs=3",
    ]
    full = load_spec("digits_mlp.toml", tmp_path / "full", *opts)
    run.train(full)
    ck = Checkpoint(full.output.checkpoint)
    assert ck.weights
    for key, value in ck.weights.items():
        np.testing.assert_array_equal(value, ck.optimizer["slots"]["ema"][key])
        assert not np.array_equal(value, ck.resume["weights"][key])
    part = load_spec("digits_mlp.toml", tmp_path / "part", *opts)

    def stop_after_1(event):
        if event["event"] == "epoch" and event["epoch"] == 1:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(Interrupted):
        run.train(part, emit=stop_after_1)
    resumed = load_spec("digits_mlp.toml", tmp_path / "part", *opts)
    run.train(resumed, resume=part.output.checkpoint)
    again = Checkpoint(resumed.output.checkpoint)
    for key, value in ck.weights.items():
        np.testing.assert_array_equal(value, again.weights[key], err_msg=key)
    np.testing.assert_array_equal(ck.history["val_loss"], again.history["val_loss"])
