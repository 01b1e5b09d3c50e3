"""Conditional GANs (model.generator.classes): the label reaches G and D, seeded class sampling, resume, hostile specs."""

import json

import numpy as np
import pytest
from test_gan import _interrupt_after, nnctl, one_error_line, tiny_spec

from helpers import SPECS, checkpoint_arrays, outputs_at
from nnctl import backend as B
from nnctl import gan, gan_losses
from nnctl import spec as spec_mod
from nnctl.errors import Interrupted
from nnctl.gan_trainer import GanTrainer, draw_latent
from nnctl.optimizers import SGD

K = 3  # classes of the toy data: three 2-D blobs


def cond_spec(tmp_path, classes=K, labels=None, loss="non_saturating", epochs=3, smoothing=0.1, dtype="float32"):
    """The tiny dense GAN of test_gan on three labelled blobs (label k around (2k - 2, 1)), conditioned."""
    path = tiny_spec(tmp_path, epochs=epochs, loss=loss, smoothing=smoothing, dtype=dtype)
    rng = np.random.default_rng(4)
    n = 210
    y = np.arange(n) % K if labels is None else labels
    x = np.stack([2.0 * (np.arange(n) % K) - 2 + 0.3 * rng.standard_normal(n), 1 + 0.3 * rng.standard_normal(n)], 1)
    np.savez(tmp_path / "blobs.npz", x=x, y=y)
    text = path.read_text().replace('latent = "normal"\n', f'latent = "normal"\nclasses = {classes}\n')
    path.write_text(text)
    return path


def _trainer(tmp_path, **kw):
    s = spec_mod.load(cond_spec(tmp_path, dtype="float64", **kw))
    x = np.load(tmp_path / "blobs.npz")["x"]
    g, d = gan.build_pair(s, x.shape[1:])
    g.to_device()
    d.to_device()
    t = GanTrainer(g, d, SGD(learning_rate=1.0), SGD(learning_rate=1.0), s.train, s.model.generator, s.seed)
    return t, x[:12]


def onehot(labels, k=K):
    out = np.zeros((len(labels), k))
    out[np.arange(len(labels)), labels] = 1.0
    return out


def test_the_label_enters_both_models_as_one_hot_inputs(tmp_path):
    t, x = _trainer(tmp_path)
    assert t.g.input_shape == (3 + K,) and t.d.input_shape == (2 + K,)
    z = np.random.default_rng(0).standard_normal((4, 3))
    outs = [t.g.predict(np.concatenate([z, onehot(np.full(4, k))], 1)) for k in range(K)]
    assert not np.allclose(outs[0], outs[1]) and not np.allclose(outs[1], outs[2])  # G reads the label
    xb = x[:4]
    scores = [t.d.predict(np.concatenate([xb, onehot(np.full(4, k))], 1)) for k in range(K)]
    assert not np.allclose(scores[0], scores[1])  # and so does D


def _g_loss(t, flat, z, labels):
    """L_G with G's weights ``flat``: G on [z, onehot], D on [G(.), onehot] (the inputs built here, not by the trainer)."""
    saved = t.g.flat_params.copy()
    t.g.flat_params[...] = flat
    fake = t.g.forward(B.asarray(np.concatenate([z, onehot(labels)], 1)), training=True)
    v = float(
        gan_losses.generator_loss(
            "non_saturating", t.d.forward(B.xp.concatenate([fake, B.asarray(onehot(labels))], 1), training=True)
        )[0]
    )
    t.g.flat_params[...] = saved
    return v


def test_a_generator_step_with_label_k_follows_the_conditioned_loss_and_changes_class_k(tmp_path):
    t, x = _trainer(tmp_path)
    k = 2
    labels = np.full(len(x), k)
    z = draw_latent(np.random.Generator(np.random.PCG64(7)), "normal", len(x), 3, np.float64)
    probe = np.concatenate([z, onehot(labels)], 1)
    before = t.g.predict(probe)
    g0, d0 = t.g.flat_params.copy(), t.d.flat_params.copy()
    coords = np.random.default_rng(2).choice(g0.size, 12, replace=False)
    want = []
    for i in coords:
        up, down = g0.copy(), g0.copy()
        up[i] += 1e-6
        down[i] -= 1e-6
        want.append((_g_loss(t, up, z, labels) - _g_loss(t, down, z, labels)) / 2e-6)
    t.latent_rng.bit_generator.state = np.random.PCG64(7).state  # the step draws the same z
    t.g_step(len(x), labels=labels)
    np.testing.assert_array_equal(B.to_numpy(t.d.flat_params), B.to_numpy(d0))
    np.testing.assert_allclose(B.to_numpy(g0 - t.g.flat_params)[coords], want, rtol=1e-6, atol=1e-9)
    assert np.abs(t.g.predict(probe) - before).max() > 1e-3  # samples of class k moved


def test_a_discriminator_step_scores_reals_and_fakes_with_their_labels(tmp_path):
    t, x = _trainer(tmp_path)
    labels = np.arange(len(x)) % K
    z = draw_latent(np.random.Generator(np.random.PCG64(11)), "normal", len(x), 3, np.float64)
    d0 = t.d.flat_params.copy()

    def loss(flat):
        saved = t.d.flat_params.copy()
        t.d.flat_params[...] = flat
        fake = t.g.forward(B.asarray(np.concatenate([z, onehot(labels)], 1)), training=True)
        labelled_fake = B.xp.concatenate([fake, B.asarray(onehot(labels))], 1)
        v = (
            gan_losses.real_term(
                "non_saturating", t.d.forward(B.asarray(np.concatenate([x, onehot(labels)], 1)), True), t.real_target
            )[0]
            + gan_losses.fake_term("non_saturating", t.d.forward(labelled_fake, True))[0]
        )
        t.d.flat_params[...] = saved
        return float(v)

    coords = np.random.default_rng(1).choice(d0.size, 12, replace=False)
    want = []
    for i in coords:
        up, down = d0.copy(), d0.copy()
        up[i] += 1e-6
        down[i] -= 1e-6
        want.append((loss(up) - loss(down)) / 2e-6)
    t.latent_rng.bit_generator.state = np.random.PCG64(11).state
    t.d_step(B.asarray(x), labels)
    np.testing.assert_allclose(B.to_numpy(d0 - t.d.flat_params)[coords], want, rtol=1e-6, atol=1e-9)


def test_image_labels_are_extra_channels_broadcast_over_the_pixels(tmp_path):
    t, _ = _trainer(tmp_path)
    x = np.random.default_rng(0).random((2, 4, 5, 1))
    out = B.to_numpy(t._conditioned(B.asarray(x), np.array([2, 0])))
    assert out.shape == (2, 4, 5, 1 + K)
    np.testing.assert_array_equal(out[..., 0], x[..., 0])
    np.testing.assert_array_equal(out[0, ..., 1:], np.broadcast_to([0, 0, 1], (4, 5, K)))
    np.testing.assert_array_equal(out[1, ..., 1:], np.broadcast_to([1, 0, 0], (4, 5, K)))


def test_generate_draws_the_requested_classes_seeded_in_rows(tmp_path):
    path = cond_spec(tmp_path, epochs=1)
    assert nnctl("train", path, "--out", tmp_path / "c.h5", "-q").returncode == 0
    a, info = gan.generate(tmp_path / "c.h5", 6, seed=3, device="cpu", labels=[2, 0])
    b, _ = gan.generate(tmp_path / "c.h5", 6, seed=3, device="cpu", labels=[2, 0])
    np.testing.assert_array_equal(a, b)  # same seed, same labels: the same samples
    assert info["labels"] == [2, 2, 2, 0, 0, 0] and info["rows"] == [2, 0] and info["per_row"] == 3
    other, _ = gan.generate(tmp_path / "c.h5", 6, seed=3, device="cpu", labels=[1, 0])
    assert not np.allclose(a[:3], other[:3]) and np.array_equal(a[3:], other[3:])  # the class is what changed
    one, info1 = gan.generate(tmp_path / "c.h5", 3, seed=3, device="cpu", labels=[2])
    np.testing.assert_array_equal(one, a[:3])  # column j holds the same z in every row
    assert info1["labels"] == [2, 2, 2]
    every, info_all = gan.generate(tmp_path / "c.h5", 7, seed=3, device="cpu")
    assert info_all["rows"] == [0, 1, 2] and info_all["labels"] == [0, 0, 0, 1, 1, 1, 2]
    p = nnctl(
        "generate", tmp_path / "c.h5", "--n", 4, "--labels", "2,0", "--seed", 3, "-o", tmp_path / "s.npy", "--json"
    )
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["labels"] == [2, 2, 0, 0]
    q = nnctl(
        "generate", tmp_path / "c.h5", "--n", 4, "--label", 2, "--label", 0, "--seed", 3, "-o", tmp_path / "t.npy"
    )
    assert q.returncode == 0, q.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), np.load(tmp_path / "t.npy"))


def test_a_conditional_grid_has_one_row_per_class(tmp_path):
    ckpt = tmp_path / "fast.h5"
    p = nnctl(
        "train",
        SPECS / "dcgan_mnist_fast.toml",
        "--out",
        ckpt,
        "--set",
        "data.subset=128",
        "--set",
        "model.generator.classes=10",
        "--epochs",
        "1",
        "-q",
    )
    assert p.returncode == 0, p.stderr
    from PIL import Image

    assert (
        nnctl("generate", ckpt, "--n", 6, "--labels", "1,4,7", "--scale", 1, "-o", tmp_path / "r.png").returncode == 0
    )
    assert nnctl("generate", ckpt, "--n", 6, "--label", 4, "--scale", 1, "-o", tmp_path / "s.png").returncode == 0
    with Image.open(tmp_path / "r.png") as rows, Image.open(tmp_path / "s.png") as square:
        assert rows.size == (2 * 28 + 2, 3 * 28 + 2 * 2)  # 3 classes x 2 samples
        assert square.size == (3 * 28 + 2 * 2, 2 * 28 + 2)  # one class: the near-square grid
    x = np.asarray(gan.generate(ckpt, 20, seed=0, device="cpu")[0])
    assert x.shape == (20, 28, 28, 1)


@pytest.mark.parametrize("loss", ["non_saturating", "wgan_gp"])
def test_resume_of_a_conditional_gan_is_bit_identical(tmp_path, loss):
    path = cond_spec(tmp_path, epochs=4, loss=loss, smoothing=0.1 if loss == "non_saturating" else 0)
    s = spec_mod.load(path)
    straight = str(tmp_path / "straight.h5")
    s = outputs_at(s, straight)
    gan.train(s)
    s = spec_mod.load(path)
    resumed = str(tmp_path / "resumed.h5")
    s = outputs_at(s, resumed)
    with pytest.raises(Interrupted, match="with epoch 2"):
        gan.train(s, emit=_interrupt_after(2))
    s = spec_mod.load(path)
    s = outputs_at(s, resumed)
    gan.train(s, resume=resumed)
    a, b = checkpoint_arrays(straight), checkpoint_arrays(resumed)
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_label_problems_exit_2_with_one_line(tmp_path):
    path = cond_spec(tmp_path, classes=4)  # the data has 3 classes
    line = one_error_line(nnctl("train", path, "--out", tmp_path / "x.h5"))
    assert "labels: expected 4 classes 0..3 (model.generator.classes), found 3 distinct labels" in line
    path = cond_spec(tmp_path, labels=np.linspace(0, 1, 210))  # regression targets, not class labels
    line = one_error_line(nnctl("train", path, "--out", tmp_path / "x.h5"))
    assert "expected integer class labels" in line
    path = cond_spec(tmp_path, labels=np.stack([np.arange(210) % 3] * 2, 1))  # two numbers per sample
    line = one_error_line(nnctl("train", path, "--out", tmp_path / "x.h5"))
    assert "expected one class label per sample" in line and "found shape [210, 2]" in line
    path = cond_spec(tmp_path, classes=1)
    line = one_error_line(nnctl("check", path))
    assert "model.generator.classes: a conditional GAN needs at least 2 classes, found 1" in line
    assert not (tmp_path / "x.h5").exists()


def test_generate_refuses_labels_it_cannot_draw(tmp_path):
    path = cond_spec(tmp_path, epochs=1)
    assert nnctl("train", path, "--out", tmp_path / "c.h5", "-q").returncode == 0
    line = one_error_line(nnctl("generate", tmp_path / "c.h5", "--label", 3, "-o", tmp_path / "c.npy"))
    assert "expected a class 0..2" in line and "found 3" in line
    line = one_error_line(nnctl("generate", tmp_path / "c.h5", "--labels", "1,x", "-o", tmp_path / "c.npy"))
    assert "--labels: expected comma-separated class numbers" in line
    (tmp_path / "plain").mkdir()
    plain = tiny_spec(tmp_path / "plain", epochs=1)  # an unconditional GAN
    assert nnctl("train", plain, "--out", tmp_path / "u.h5", "-q").returncode == 0
    line = one_error_line(nnctl("generate", tmp_path / "u.h5", "--label", 1, "-o", tmp_path / "u.npy"))
    assert "unconditional GAN" in line
    line = one_error_line(nnctl("train", path, "--resume", tmp_path / "u.h5"))
    assert "model.generator.classes differs" in line


def test_the_shipped_cgan_trains_a_few_batches_and_draws_each_digit(tmp_path):
    ckpt = tmp_path / "cgan.h5"
    p = nnctl("train", SPECS / "cgan_mnist.toml", "--out", ckpt, "--set", "data.subset=64", "--epochs", "1", "-q")
    assert p.returncode == 0, p.stderr
    p = nnctl("generate", ckpt, "--n", 20, "-o", tmp_path / "grid.png", "--json")
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    assert info["rows"] == list(range(10)) and info["labels"] == [k for k in range(10) for _ in range(2)]
