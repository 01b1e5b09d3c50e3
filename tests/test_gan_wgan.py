"""WGAN-GP (train.gan.loss = "wgan_gp"): the losses, the penalty and its parameter gradient, checked in float64."""

import numpy as np
import pytest
from test_gan import _finite_difference, host_d_loss, host_g_loss, nnctl, one_error_line, tiny_spec
from test_gan_conditional import cond_spec, onehot

from nnctl import backend as B
from nnctl import gan, gan_losses
from nnctl import spec as spec_mod
from nnctl.gan_trainer import GanTrainer, draw_latent
from nnctl.optimizers import SGD

S_REAL = np.array([[-2.0], [0.4], [1.6], [3.0]])
S_FAKE = np.array([[-3.0], [-0.5], [0.8]])


def test_wasserstein_losses_and_their_gradients():
    v, g_real, g_fake = host_d_loss("wgan_gp", S_REAL, S_FAKE)
    assert float(v) == pytest.approx(S_FAKE.mean() - S_REAL.mean(), rel=1e-12)
    loss = lambda r, f: host_d_loss("wgan_gp", r, f)[0]  # noqa: E731
    np.testing.assert_allclose(g_real, _finite_difference(lambda r: loss(r, S_FAKE), S_REAL), atol=1e-8)
    np.testing.assert_allclose(g_fake, _finite_difference(lambda f: loss(S_REAL, f), S_FAKE), atol=1e-8)
    v, g = host_g_loss("wgan_gp", S_FAKE)
    assert float(v) == pytest.approx(-S_FAKE.mean())
    np.testing.assert_allclose(g, _finite_difference(lambda f: host_g_loss("wgan_gp", f)[0], S_FAKE), atol=1e-8)


def host_penalty(gx, weight):
    """``gan_losses.penalty`` of host input gradients, run on the active device, its results back on the host."""
    value, w, u = gan_losses.penalty(B.asarray(gx), weight)
    return float(value), B.to_numpy(w), B.to_numpy(u)


def test_the_penalty_value_and_its_derivative_along_the_input_gradients():
    gx = np.random.default_rng(0).standard_normal((5, 2, 3)) * np.array([0.1, 0.5, 1.0, 2.0, 4.0])[:, None, None]
    value, w, u = host_penalty(gx, 10.0)
    norms = np.sqrt((gx.reshape(5, -1) ** 2).sum(1))
    assert float(value) == pytest.approx(10.0 * np.mean((norms - 1) ** 2), rel=1e-12)
    # d value / d gx = w_i u_i, the direction and weight the trainer's finite difference uses
    want = _finite_difference(lambda a: host_penalty(a, 10.0)[0], gx)
    np.testing.assert_allclose(w.reshape(5, 1, 1) * u, want, atol=1e-7)
    zero = host_penalty(np.zeros((2, 3)), 1.0)
    assert float(zero[0]) == pytest.approx(1.0) and np.all(zero[2] == 0)  # no 0/0 at a flat critic


def _critic(tmp_path, d_act="linear", classes=None, dtype="float64"):
    """A float64 trainer of the tiny GAN whose critic D(x) = Dense(tanh) -> Dense 1 (smooth: exact second derivatives)."""
    if classes:
        path = cond_spec(tmp_path, dtype="float64", loss="wgan_gp", smoothing=0)
    else:
        path = tiny_spec(tmp_path, dtype=dtype, loss="wgan_gp", smoothing=0, d_act=d_act)
    s = spec_mod.load(path)
    x = np.load(tmp_path / "blobs.npz")["x"]
    g, d = gan.build_pair(s, x.shape[1:])
    g.to_device()
    d.to_device()
    t = GanTrainer(g, d, SGD(learning_rate=1.0), SGD(learning_rate=1.0), s.train, s.model.generator, s.seed)
    return t, x[:10]


def _penalty_of(t, flat, x_hat, labels=None):
    """GP(theta) = lambda mean_i (||grad_x D(x_hat_i)|| - 1)^2 with D's weights ``flat``; grad_x by D's backward pass."""
    saved = t.d.flat_params.copy()
    t.d.flat_params[...] = flat
    inp = B.asarray(x_hat if labels is None else np.concatenate([x_hat, onehot(labels)], 1))
    s = t._score(inp)
    gx = B.to_numpy(t._backward_d(B.xp.ones_like(s)))[:, : x_hat.shape[1]]
    t.d.flat_params[...] = saved
    return t.gp_weight * np.mean((np.sqrt((gx**2).sum(1)) - 1) ** 2)


@pytest.mark.parametrize("case", ["linear", "sigmoid", "conditional"])
def test_the_penalty_gradient_equals_finite_differences_of_the_penalty_in_the_weights(tmp_path, case):
    t, x = _critic(
        tmp_path, d_act="sigmoid" if case == "sigmoid" else "linear", classes=3 if case == "conditional" else None
    )
    labels = np.arange(len(x)) % 3 if case == "conditional" else None
    # points away from the data (a large gradient) and near it, so the weights w_i take both signs
    x_hat = np.concatenate([x[:5] * 3, x[5:] * 0.2])
    flat = t.d.flat_params.copy()
    # the critic's weights scaled so that some ||grad_x D|| are above 1 and some below
    t.d.flat_params[...] = flat * 1.5
    theta = t.d.flat_params.copy()
    norms = []
    for i in range(len(x_hat)):
        inp = x_hat[i : i + 1] if labels is None else np.concatenate([x_hat[i : i + 1], onehot(labels[i : i + 1])], 1)
        s = t._score(B.asarray(inp))
        norms.append(np.sqrt((B.to_numpy(t._backward_d(B.xp.ones_like(s)))[:, :2] ** 2).sum()))
    assert min(norms) < 1 < max(norms)
    value, grad = t.penalty_at(B.asarray(x_hat), labels)
    assert float(value) == pytest.approx(_penalty_of(t, theta, x_hat, labels), rel=1e-12)
    want = np.empty(theta.shape, B.to_numpy(theta).dtype)
    eps = 1e-6
    for i in range(theta.size):
        up, down = theta.copy(), theta.copy()
        up[i] += eps
        down[i] -= eps
        want[i] = (_penalty_of(t, up, x_hat, labels) - _penalty_of(t, down, x_hat, labels)) / (2 * eps)
    assert np.abs(want).max() > 1e-2
    np.testing.assert_allclose(B.to_numpy(grad), want, rtol=1e-5, atol=1e-8)


def test_the_input_gradient_the_penalty_reads_is_the_critics(tmp_path):
    t, x = _critic(tmp_path)
    s = t._score(B.asarray(x))
    gx = B.to_numpy(t._backward_d(B.xp.ones_like(s)))
    score = lambda a: float(t.d.forward(B.asarray(a), training=True).sum())  # noqa: E731
    np.testing.assert_allclose(gx, _finite_difference(score, x.copy()), rtol=1e-6, atol=1e-9)


def test_a_wgan_gp_discriminator_step_is_minus_the_gradient_of_the_whole_loss(tmp_path):
    t, x = _critic(tmp_path)
    n = len(x)
    rng = np.random.Generator(np.random.PCG64(11))  # the step's draws in its order: z, then the mixing a
    z = draw_latent(rng, "normal", n, 3, np.float64)
    a = rng.uniform(0.0, 1.0, (n, 1))
    theta = t.d.flat_params.copy()
    fake = t.g.predict(z)  # G has no batch statistics: inference equals training mode
    x_hat = a * x + (1 - a) * fake

    def loss(flat):
        saved = t.d.flat_params.copy()
        t.d.flat_params[...] = flat
        v = t.d.forward(B.asarray(fake), training=True).mean() - t.d.forward(B.asarray(x), training=True).mean()
        t.d.flat_params[...] = saved
        return float(v) + _penalty_of(t, flat, x_hat)

    coords = np.random.default_rng(3).choice(theta.size, 15, replace=False)
    want = []
    for i in coords:
        up, down = theta.copy(), theta.copy()
        up[i] += 1e-6
        down[i] -= 1e-6
        want.append((loss(up) - loss(down)) / 2e-6)
    t.latent_rng.bit_generator.state = np.random.PCG64(11).state
    value = t.d_step(B.asarray(x))[0]
    assert float(value) == pytest.approx(loss(theta), rel=1e-10)
    np.testing.assert_allclose(B.to_numpy(theta - t.d.flat_params)[coords], want, rtol=1e-5, atol=1e-8)


def test_a_float32_penalty_gradient_is_close_to_the_float64_one(tmp_path):
    t64, x = _critic(tmp_path)
    x_hat = x * 2
    _, want = t64.penalty_at(B.asarray(x_hat))
    (tmp_path / "f32").mkdir()
    t32, _ = _critic(tmp_path / "f32", dtype="float32")
    t32.d.flat_params[...] = t64.d.flat_params.astype(np.float32)
    _, got = t32.penalty_at(B.asarray(x_hat.astype(np.float32)))
    assert got.dtype == np.float32
    got, want = B.to_numpy(got), B.to_numpy(want)
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-3 * np.abs(want).max())


def test_wgan_gp_trains_from_the_cli(tmp_path):
    path = tiny_spec(tmp_path, loss="wgan_gp", smoothing=0, epochs=2)
    p = nnctl("train", path, "--out", tmp_path / "w.h5", "--json")
    assert p.returncode == 0, p.stderr
    assert nnctl("generate", tmp_path / "w.h5", "--n", 4, "-o", tmp_path / "w.npy").returncode == 0
    assert np.all(np.isfinite(np.load(tmp_path / "w.npy")))


@pytest.mark.parametrize(
    "old, new, message",
    [
        (
            "label_smoothing = 0.1",
            "label_smoothing = 0.1",
            "train.gan.label_smoothing: applies to the non_saturating loss only; expected 0 with loss = 'wgan_gp'",
        ),
        (
            '[[model.discriminator.layers]]\ntype = "Dense"\nunits = 1',
            "[[model.discriminator.layers]]\ntype = "
            '"BatchNormalization"\n[[model.discriminator.layers]]\ntype = "Dense"\nunits = 1',
            "model.discriminator.layers[1] (batch_normalization): expected no BatchNormalization with loss = 'wgan_gp'",
        ),
        ("d_steps = 1", "d_steps = 1\ngradient_penalty = -1", "train.gan.gradient_penalty"),
    ],
)
def test_hostile_wgan_gp_specs_exit_2_with_one_line(tmp_path, old, new, message):
    path = tiny_spec(tmp_path, loss="wgan_gp", smoothing=0.1 if "smoothing" in message else 0)
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    line = one_error_line(nnctl("check", path))
    assert message in line
