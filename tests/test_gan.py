"""GANs (train.mode = "gan"): the adversarial losses, the alternation, one checkpoint, resume, generate, hostile specs."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from helpers import SPECS, checkpoint_arrays, outputs_at
from nnctl import backend as B
from nnctl import gan, gan_losses
from nnctl import spec as spec_mod
from nnctl.errors import Interrupted, SpecError
from nnctl.gan_trainer import GanTrainer, draw_latent
from nnctl.optimizers import SGD

TINY = """
name = "tiny-gan"
seed = 3
dtype = "{dtype}"
[data]
train = "blobs.npz"
[model.generator]
latent_dim = 3
latent = "{latent}"
[[model.generator.layers]]
type = "Dense"
units = 8
activation = "tanh"
[[model.generator.layers]]
type = "Dense"
units = 2
[model.discriminator]
[[model.discriminator.layers]]
type = "Dense"
units = 8
activation = "tanh"
[[model.discriminator.layers]]
type = "Dense"
units = 1
activation = "{d_act}"
[train]
mode = "gan"
epochs = {epochs}
batch_size = 32
[train.gan]
loss = "{loss}"
d_steps = {d_steps}
label_smoothing = {smoothing}
generator_optimizer = {{ type = "adam", learning_rate = 0.005, beta_1 = 0.5 }}
discriminator_optimizer = {{ type = "rmsprop", learning_rate = 0.002 }}
"""


def tiny_spec(
    tmp_path,
    dtype="float32",
    latent="normal",
    d_act="linear",
    epochs=3,
    loss="non_saturating",
    d_steps=1,
    smoothing=0.1,
    n=200,
):
    """A dense GAN on two 2-D Gaussian blobs, written into tmp_path; returns the spec path."""
    rng = np.random.default_rng(0)
    side = rng.integers(0, 2, n)
    x = np.stack([np.where(side == 0, -2.0, 2.0) + 0.3 * rng.standard_normal(n), 1 + 0.3 * rng.standard_normal(n)], 1)
    np.savez(tmp_path / "blobs.npz", x=x, y=np.zeros(n))
    path = tmp_path / "gan.toml"
    path.write_text(
        TINY.format(
            dtype=dtype, latent=latent, d_act=d_act, epochs=epochs, loss=loss, d_steps=d_steps, smoothing=smoothing
        )
    )
    return path


def nnctl(*args, cwd=None, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "nnctl", *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=cwd
    )


def check_in_process(path):
    """``nnctl check PATH`` without a new interpreter: (exit code, stderr)."""
    from typer.testing import CliRunner

    from nnctl.cli.main import app

    r = CliRunner().invoke(app, ["check", str(path)])
    return r.exit_code, r.stderr if hasattr(r, "stderr") else r.output


def one_error_line(p):
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2, p.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in p.stderr, p.stderr
    return lines[0]


# -- the losses ----------------------------------------------------------------------------------------
def _sigmoid(s):
    return 1 / (1 + np.exp(-s))


def host_d_loss(kind, s_real, s_fake, *target):
    """``gan_losses.discriminator_loss`` on host scores, run on the active device, its results back on the host."""
    v, g_real, g_fake = gan_losses.discriminator_loss(kind, B.asarray(s_real), B.asarray(s_fake), *target)
    return float(v), B.to_numpy(g_real), B.to_numpy(g_fake)


def host_g_loss(kind, s_fake):
    """``gan_losses.generator_loss`` on host scores, run on the active device, its results back on the host."""
    v, g = gan_losses.generator_loss(kind, B.asarray(s_fake))
    return float(v), B.to_numpy(g)


def _finite_difference(f, s, eps=1e-6):
    g = np.zeros_like(s)
    for i in np.ndindex(s.shape):
        up, down = s.copy(), s.copy()
        up[i] += eps
        down[i] -= eps
        g[i] = (f(up) - f(down)) / (2 * eps)
    return g


SCORES = np.array([[-30.0], [-2.5], [-0.3], [0.2], [1.7], [25.0]])  # saturated at both ends, too
SCORES_FAKE = np.array([[-4.0], [-0.7], [0.1], [3.2], [40.0]])


@pytest.mark.parametrize("target", [1.0, 0.9])
def test_non_saturating_losses_are_binary_cross_entropies_with_their_gradients(target):
    v, g_real, g_fake = host_d_loss("non_saturating", SCORES, SCORES_FAKE, target)
    # -t log p - (1 - t) log(1 - p) on reals, -log(1 - q) on fakes; logaddexp keeps the saturated ends exact
    bce_real = np.mean(target * np.logaddexp(0, -SCORES) + (1 - target) * np.logaddexp(0, SCORES))
    assert float(v) == pytest.approx(bce_real + np.mean(np.logaddexp(0, SCORES_FAKE)), rel=1e-12)
    loss = lambda r, f: host_d_loss("non_saturating", r, f, target)[0]  # noqa: E731
    np.testing.assert_allclose(g_real, _finite_difference(lambda r: loss(r, SCORES_FAKE), SCORES), atol=1e-8)
    np.testing.assert_allclose(g_fake, _finite_difference(lambda f: loss(SCORES, f), SCORES_FAKE), atol=1e-8)
    v, g = host_g_loss("non_saturating", SCORES_FAKE)
    assert float(v) == pytest.approx(np.mean(-np.log(_sigmoid(SCORES_FAKE).clip(1e-300))), rel=1e-9)
    np.testing.assert_allclose(
        g,
        _finite_difference(lambda f: host_g_loss("non_saturating", f)[0], SCORES_FAKE),
        atol=1e-8,
    )
    assert np.all(g[:-1] < 0) and g[-1] <= 0  # pushes every score up (sigma(40) is 1 in float64)


def test_hinge_losses_and_their_gradients():
    off_kink_real = np.array([[-2.0], [0.4], [1.6], [3.0]])  # away from s = 1, where relu(1 - s) has its kink
    off_kink_fake = np.array([[-3.0], [-0.5], [0.8]])
    v, g_real, g_fake = host_d_loss("hinge", off_kink_real, off_kink_fake)
    assert float(v) == pytest.approx(
        np.mean(np.maximum(0, 1 - off_kink_real)) + np.mean(np.maximum(0, 1 + off_kink_fake))
    )
    loss = lambda r, f: host_d_loss("hinge", r, f)[0]  # noqa: E731
    np.testing.assert_allclose(g_real, _finite_difference(lambda r: loss(r, off_kink_fake), off_kink_real), atol=1e-8)
    np.testing.assert_allclose(g_fake, _finite_difference(lambda f: loss(off_kink_real, f), off_kink_fake), atol=1e-8)
    v, g = host_g_loss("hinge", off_kink_fake)
    assert float(v) == pytest.approx(-off_kink_fake.mean())
    np.testing.assert_allclose(g, _finite_difference(lambda f: host_g_loss("hinge", f)[0], off_kink_fake), atol=1e-8)


# -- the alternation -----------------------------------------------------------------------------------
def _trainer(tmp_path, **kw):
    s = spec_mod.load(tiny_spec(tmp_path, dtype="float64", **kw))
    x = np.load(tmp_path / "blobs.npz")["x"]
    g, d = gan.build_pair(s, x.shape[1:])
    g.to_device()
    d.to_device()
    # plain SGD with learning rate 1: each step moves the weights by exactly minus the gradient
    t = GanTrainer(g, d, SGD(learning_rate=1.0), SGD(learning_rate=1.0), s.train, s.model.generator, s.seed)
    return t, x[:16]


def _loss_of(trainer, model, flat, which, x, z):
    """L_D or L_G as a function of one model's flat weights, with the other's held, for finite differences."""
    saved = model.flat_params.copy()
    model.flat_params[...] = flat
    fake = trainer.g.forward(B.asarray(z), training=True)
    if which == "d":
        x = B.asarray(x)
        v = float(
            gan_losses.real_term("non_saturating", trainer.d.forward(x, training=True), trainer.real_target)[0]
            + gan_losses.fake_term("non_saturating", trainer.d.forward(fake, training=True))[0]
        )
    else:
        v = float(gan_losses.generator_loss("non_saturating", trainer.d.forward(fake, training=True))[0])
    model.flat_params[...] = saved
    return v


def _grad_by_differences(trainer, model, which, x, z, coords, eps=1e-6):
    out = []
    for i in coords:
        up, down = model.flat_params.copy(), model.flat_params.copy()
        up[i] += eps
        down[i] -= eps
        out.append(
            (_loss_of(trainer, model, up, which, x, z) - _loss_of(trainer, model, down, which, x, z)) / (2 * eps)
        )
    return np.array(out)


def test_a_discriminator_step_moves_only_the_discriminator_by_its_loss_gradient(tmp_path):
    t, x = _trainer(tmp_path)
    g0, d0 = t.g.flat_params.copy(), t.d.flat_params.copy()
    z = draw_latent(np.random.Generator(np.random.PCG64(11)), "normal", len(x), 3, np.float64)
    t.latent_rng.bit_generator.state = np.random.PCG64(11).state  # the step draws the same z
    coords = np.random.default_rng(1).choice(d0.size, 12, replace=False)
    want = _grad_by_differences(t, t.d, "d", x, z, coords)
    t.d_step(B.asarray(x))
    np.testing.assert_array_equal(B.to_numpy(t.g.flat_params), B.to_numpy(g0))  # the generator is untouched
    moved = B.to_numpy(d0 - t.d.flat_params)
    np.testing.assert_allclose(moved[coords], want, rtol=1e-6, atol=1e-9)
    assert np.abs(moved).max() > 0


def test_a_generator_step_moves_only_the_generator_by_its_loss_gradient(tmp_path):
    t, x = _trainer(tmp_path)
    g0, d0 = t.g.flat_params.copy(), t.d.flat_params.copy()
    z = draw_latent(np.random.Generator(np.random.PCG64(7)), "normal", len(x), 3, np.float64)
    t.latent_rng.bit_generator.state = np.random.PCG64(7).state
    coords = np.random.default_rng(2).choice(g0.size, 12, replace=False)
    want = _grad_by_differences(t, t.g, "g", x, z, coords)
    t.g_step(len(x))
    np.testing.assert_array_equal(B.to_numpy(t.d.flat_params), B.to_numpy(d0))  # the discriminator is untouched
    moved = B.to_numpy(g0 - t.g.flat_params)
    np.testing.assert_allclose(moved[coords], want, rtol=1e-6, atol=1e-9)
    assert np.abs(moved).max() > 0


def test_a_sigmoid_discriminator_is_scored_on_its_logits(tmp_path):
    t, x = _trainer(tmp_path, d_act="sigmoid")
    out = t.d.forward(B.asarray(x), training=True)
    s = t._score(B.asarray(x))
    np.testing.assert_allclose(out, _sigmoid(s), rtol=1e-12)


def test_d_steps_per_generator_step(tmp_path):
    s = spec_mod.load(tiny_spec(tmp_path, d_steps=3, epochs=1))
    s = outputs_at(s, str(tmp_path / "d3.h5"))
    gan.train(s)
    from nnctl.checkpoint import Checkpoint

    iterations = Checkpoint(tmp_path / "d3.h5").resume["info"]["iterations"]
    assert iterations == {"discriminator": 7, "generator": 2}  # 200 samples / 32 = 7 batches; a G step per 3


# -- one checkpoint, resume ---------------------------------------------------------------------------
def _interrupt_after(epoch):
    def emit(event):
        if event["event"] == "epoch" and event["epoch"] == epoch:
            os.kill(os.getpid(), signal.SIGINT)  # handled by the session: stop before the next batch

    return emit


@pytest.mark.skipif(not hasattr(signal, "SIGINT"), reason="POSIX signals")
def test_resume_after_an_interrupt_is_bit_identical(tmp_path):
    path = tiny_spec(tmp_path, epochs=5)
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
    assert any(k.startswith("weights/generator.") for k in a) and any(k.startswith("weights/discriminator.") for k in a)
    assert any(k.startswith("optimizer/slots/generator.") for k in a)
    assert any(k.startswith("optimizer/slots/discriminator.") for k in a)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    from nnctl.checkpoint import Checkpoint

    ha, hb = Checkpoint(straight).history, Checkpoint(resumed).history
    for k in ("d_loss", "g_loss", "d_real_accuracy", "d_fake_accuracy"):
        assert ha[k] == hb[k] and len(ha[k]) == 5


def test_resume_from_the_cli_and_the_epoch_lines(tmp_path):
    path = tiny_spec(tmp_path, epochs=2, latent="uniform", loss="hinge", smoothing=0.0)
    p = nnctl("train", path, "--out", tmp_path / "a.h5")
    assert p.returncode == 0, p.stderr
    lines = p.stderr.strip().splitlines()
    assert lines[0].startswith("epoch 1/2  d_loss ") and "g_loss" in lines[0] and "d_real_accuracy" in lines[0]
    assert p.stdout.startswith(f"checkpoint {tmp_path / 'a.h5'}  epochs 2")
    p = nnctl("train", path, "--resume", tmp_path / "a.h5", "--epochs", "4", "--json")
    assert p.returncode == 0, p.stderr
    events = [json.loads(line) for line in p.stdout.splitlines()]
    assert [e["event"] for e in events] == ["resume", "epoch", "epoch", "done"]
    assert {"d_loss", "g_loss", "d_real_accuracy", "d_fake_accuracy"} <= set(events[1])
    assert nnctl("train", path, "--out", tmp_path / "b.h5", "--epochs", "4", "-q").returncode == 0
    a, b = checkpoint_arrays(tmp_path / "a.h5"), checkpoint_arrays(tmp_path / "b.h5")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    run = tmp_path / "a.run"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4] and "g_loss" in rows[0]
    p = nnctl("plot", tmp_path / "a.h5", "--terminal")
    assert p.returncode == 0 and "g_loss" in p.stdout, p.stderr


def test_a_plain_checkpoint_is_not_resumed_by_a_gan_spec_nor_the_reverse(tmp_path):
    path = tiny_spec(tmp_path, epochs=1)
    assert nnctl("train", path, "--out", tmp_path / "g.h5", "-q").returncode == 0
    assert nnctl("train", SPECS / "xor.toml", "--out", tmp_path / "x.h5", "--epochs", "1", "-q").returncode == 0
    line = one_error_line(nnctl("train", path, "--resume", tmp_path / "x.h5"))
    assert "holds an ordinary model but the spec trains a GAN" in line
    line = one_error_line(nnctl("train", SPECS / "xor.toml", "--resume", tmp_path / "g.h5"))
    assert "holds a GAN" in line


# -- generate, and the verbs that take one model -------------------------------------------------------
def test_generate_is_seeded_and_writes_pngs_and_arrays(tmp_path):
    ckpt = tmp_path / "fast.h5"
    p = nnctl(
        "train", SPECS / "dcgan_mnist_fast.toml", "--out", ckpt, "--set", "data.subset=128", "--epochs", "1", "-q"
    )
    assert p.returncode == 0, p.stderr
    a, b, c = (tmp_path / f"{n}.npy" for n in "abc")
    for out, seed in ((a, 5), (b, 5), (c, 6)):
        p = nnctl("generate", ckpt, "--n", 10, "--seed", seed, "--output", out)
        assert p.returncode == 0, p.stderr
    x = np.load(a)
    assert x.shape == (10, 28, 28, 1)
    np.testing.assert_array_equal(x, np.load(b))
    assert not np.array_equal(x, np.load(c))
    assert 0 <= x.min() and x.max() <= 255 and x.max() > 1  # pixel units: the checkpoint's rescale undone
    p = nnctl("generate", ckpt, "--n", 10, "--output", tmp_path / "grid.png", "--scale", "1", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["shape"] == [28, 28, 1]
    from PIL import Image

    with Image.open(tmp_path / "grid.png") as im:  # 4 x 3 tiles of 28 pixels, 2-pixel gaps
        assert im.size == (4 * 28 + 3 * 2, 3 * 28 + 2 * 2) and im.mode == "L"
    for verb in ("evaluate", "predict"):
        line = one_error_line(nnctl(verb, ckpt, *(["-"] if verb == "predict" else [])))
        assert "a GAN checkpoint" in line and f"nnctl generate {ckpt}" in line
    s = nnctl("summary", ckpt, "--json")
    assert s.returncode == 0, s.stderr
    assert [json.loads(line)["model"] for line in s.stdout.splitlines()] == [
        f"{ckpt} (generator)",
        f"{ckpt} (discriminator)",
    ]


def test_generate_refuses_a_plain_checkpoint_and_a_png_of_vectors(tmp_path):
    assert nnctl("train", SPECS / "xor.toml", "--out", tmp_path / "x.h5", "--epochs", "1", "-q").returncode == 0
    line = one_error_line(nnctl("generate", tmp_path / "x.h5"))
    assert "not a GAN checkpoint" in line
    path = tiny_spec(tmp_path, epochs=1)
    assert nnctl("train", path, "--out", tmp_path / "g.h5", "-q").returncode == 0
    line = one_error_line(nnctl("generate", tmp_path / "g.h5", "--output", tmp_path / "g.png"))
    assert "needs image samples" in line and not (tmp_path / "g.png").exists()
    line = one_error_line(nnctl("generate", tmp_path / "g.h5", "--output", tmp_path / "g.jpg"))
    assert "expected a .png" in line
    line = one_error_line(nnctl("generate", tmp_path / "g.h5", "--n", 5000, "--output", tmp_path / "big.png"))
    assert "at most 4096 samples" in line
    p = nnctl("generate", tmp_path / "g.h5", "--n", "3", "--output", tmp_path / "g.npy")
    assert p.returncode == 0 and np.load(tmp_path / "g.npy").shape == (3, 2)


def test_the_shipped_dcgan_trains_a_few_batches(tmp_path):
    ckpt = tmp_path / "dc.h5"
    p = nnctl("train", SPECS / "dcgan_mnist.toml", "--out", ckpt, "--set", "data.subset=64", "--epochs", "1", "-q")
    assert p.returncode == 0, p.stderr
    assert nnctl("generate", ckpt, "--n", 4, "--output", tmp_path / "dc.png").returncode == 0


# -- hostile specs ---------------------------------------------------------------------------------------
def _edited(tmp_path, old, new):
    path = tiny_spec(tmp_path)
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return path


HOSTILE = [
    ("[model.generator]", "[model.generatorr]", "model.generatorr: unknown key"),
    ('units = 1\nactivation = "linear"', 'units = 2\nactivation = "linear"', "expected 1 unit, found 2"),
    ('units = 1\nactivation = "linear"', 'units = 1\nactivation = "relu"', "expected no activation (or sigmoid)"),
    ('latent = "normal"', 'latent = "cauchy"', "model.generator.latent"),
    ("d_steps = 1", "d_steps = 0", "train.gan.d_steps"),
    ("label_smoothing = 0.1", "label_smoothing = 0.7", "train.gan.label_smoothing"),
    ('loss = "non_saturating"', 'loss = "hinge"', "applies to the non_saturating loss only"),
    ('mode = "gan"', 'mode = "gan"\nloss = "mse"', "train.loss: not used with train.mode"),
    ('mode = "gan"', 'mode = "gan"\nmetrics = ["accuracy"]', "train.metrics: not used"),
    ("units = 8\nactivation", "unitz = 8\nactivation", "model.generator.layers[0].unitz: unknown key"),
    ('mode = "gan"', 'mode = "supervised"', "model.generator: only read with train.mode"),
]


@pytest.mark.parametrize("old,new,message", HOSTILE, ids=[h[2][:30] for h in HOSTILE])
def test_hostile_gan_specs_exit_2_with_one_line(tmp_path, old, new, message):
    path = _edited(tmp_path, old, new)
    code, err = check_in_process(path)
    assert code == 2 and "Traceback" not in err, err
    assert message in err, err
    lines = err.strip().splitlines()  # one line per problem: unitz unknown and units missing; three GAN keys
    assert len(lines) == (2 if "unitz" in message else 4 if "only read" in message else 1), err
    assert all(line.startswith(f"error: {path}: ") for line in lines), err


@pytest.mark.parametrize(
    "which, start, end",
    [
        ("generator", "[model.generator]", "[model.discriminator]"),
        ("discriminator", "[model.discriminator]", "[train]"),
    ],
)
def test_a_missing_model_is_one_line(tmp_path, which, start, end):
    path = tiny_spec(tmp_path)
    text = path.read_text()
    path.write_text(text[: text.index(start)] + text[text.index(end) :])
    code, err = check_in_process(path)
    assert code == 2
    assert err == f'error: {path}: model.{which}: required with train.mode = "gan" (a table with layers = [...])\n'


@pytest.mark.parametrize(
    "old,new,message",
    [
        (
            'units = 1\nactivation = "linear"',
            'units = 1\nactivation = "linear"\n[[model.discriminator.layers]]\ntype = "Reshape"\ntarget_shape = [1, 1]',
            "must output one score per sample, found output shape [1, 1]",
        ),
        (
            "units = 2\n",
            "units = 3\n",
            "model.generator: outputs samples of shape [3], but the data's samples have shape [2]",
        ),
    ],
)
def test_shapes_known_only_with_the_data_exit_2_at_train(tmp_path, old, new, message):
    path = _edited(tmp_path, old, new)
    line = one_error_line(nnctl("train", path, "--out", tmp_path / "h.h5"))
    assert message in line and not (tmp_path / "h.h5").exists()


def test_real_data_outside_the_generators_range_is_refused(tmp_path):
    p = nnctl("train", SPECS / "dcgan_mnist_fast.toml", "--out", tmp_path / "r.h5", "--set", 'data.rescale="1"')
    line = one_error_line(p)
    assert "range over [0, 255]" in line and "sigmoid" in line and 'data.rescale = "1/255"' in line


def test_the_library_refuses_a_distributed_gan(tmp_path):
    from nnctl.strategy import DataParallel

    s = spec_mod.load(tiny_spec(tmp_path))
    with pytest.raises(SpecError, match="one process"):
        gan.train(s, strategy=DataParallel.__new__(DataParallel))  # never used: refused before any work


def test_emulated_gpu_gan_training_and_sampling_equal_the_cpu_bit_for_bit(tmp_path, emulated_gpu):
    from nnctl import backend

    path = tiny_spec(tmp_path, epochs=2)
    outs = {}
    for device in ("cpu", "gpu"):
        s = spec_mod.load(path)
        s = outputs_at(s, str(tmp_path / f"{device}.h5"))
        gan.train(s, device=device)
        outs[device] = (
            checkpoint_arrays(tmp_path / f"{device}.h5"),
            gan.generate(tmp_path / f"{device}.h5", 5, 1, device)[0],
        )
    assert backend.device == "gpu" and backend.xp is emulated_gpu
    (cpu, cpu_x), (gpu, gpu_x) = outs["cpu"], outs["gpu"]
    assert cpu.keys() == gpu.keys() and len(cpu) > 0
    for k in cpu:
        np.testing.assert_array_equal(gpu[k], cpu[k], err_msg=k)
    assert isinstance(gpu_x, np.ndarray)
    np.testing.assert_array_equal(gpu_x, cpu_x)


def test_more_d_steps_than_batches_is_refused_before_training(tmp_path):
    path = tiny_spec(tmp_path, d_steps=8)  # 200 samples in batches of 32: 7 batches per epoch
    line = one_error_line(nnctl("train", path, "--out", tmp_path / "n.h5"))
    assert "train.gan.d_steps: 8 discriminator steps per round, but an epoch has 7 batches" in line


def test_the_done_note_names_the_failure_the_accuracies_show():
    assert "discriminator is winning" in gan.diagnosis({"d_real_accuracy": [0.7, 0.99], "d_fake_accuracy": [0.8, 1.0]})
    assert "mode collapse" in gan.diagnosis({"d_real_accuracy": [0.2, 0.0], "d_fake_accuracy": [0.1, 0.0]})
    assert gan.diagnosis({"d_real_accuracy": [0.6], "d_fake_accuracy": [0.7]}) == ""
