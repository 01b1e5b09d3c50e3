"""A denoising convolutional autoencoder: noise on the input only, the clean image as the target, a
Conv2DTranspose decoder; evaluate's noisy-input and denoised MSE."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from nnctl import run
from nnctl import spec as spec_mod
from nnctl.cli.main import app
from nnctl.data import load_dataset


def _images(tmp_path, n=64, seed=0):
    """Blurry 8x8 blobs in [0, 255], saved as (N, 8, 8, 1) arrays."""
    r = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:8, 0:8]
    cy, cx = r.uniform(2, 6, (2, n, 1, 1))
    img = (np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 4.0) * 255)[..., None]
    np.savez(tmp_path / "train.npz", x=img.astype(np.uint8), y=np.zeros(n, np.int64))
    np.savez(tmp_path / "test.npz", x=img[:32].astype(np.uint8), y=np.zeros(32, np.int64))
    return img


def _raw(tmp_path, noise=0.4, epochs=2):
    conv = {"kernel_size": 3, "padding": "same"}
    return {
        "seed": 5,
        "data": {
            "train": "train.npz",
            "test": "test.npz",
            "target": "input",
            "rescale": "1/255",
            "augment": {"noise": noise},
        },
        "model": {
            "layers": [
                {"type": "Conv2D", "filters": 4, "activation": "relu", **conv},
                {"type": "MaxPooling2D", "pool_size": 2, "name": "code"},
                {"type": "Conv2DTranspose", "filters": 4, "strides": 2, "activation": "relu", **conv},
                {"type": "Conv2D", "filters": 1, "activation": "sigmoid", **conv},
            ]
        },
        "train": {
            "loss": "mse",
            "optimizer": {"type": "adam", "learning_rate": 0.01},
            "epochs": epochs,
            "batch_size": 16,
        },
        "output": {"checkpoint": str(tmp_path / "cae.h5")},
    }


def test_conv_denoising_alters_the_input_and_keeps_the_clean_target(tmp_path, monkeypatch):
    from nnctl import train as T

    _images(tmp_path)
    seen = []
    real = T.Trainer.loss_and_grad

    def spy(self, xb, yb, *a, **kw):
        seen.append((np.array(xb), np.array(yb)))
        return real(self, xb, yb, *a, **kw)

    monkeypatch.setattr(T.Trainer, "loss_and_grad", spy)
    s = spec_mod.validate(_raw(tmp_path, epochs=1), base_dir=tmp_path)
    run.train(s)
    clean = load_dataset(s).x_train
    assert clean.shape[1:] == (8, 8, 1)
    rows = {r.tobytes() for r in clean}
    assert seen and all(xb.shape[1:] == (8, 8, 1) for xb, _ in seen)
    for xb, yb in seen:
        assert all(r.tobytes() in rows for r in yb)  # the target: clean training images
        assert not any(r.tobytes() in rows for r in xb)  # the input: every image noised
        assert np.std(xb - yb) == pytest.approx(0.4, rel=0.15)  # the noise's sigma, on the input only


def test_evaluate_reports_noisy_and_denoised_mse(tmp_path):
    img = _images(tmp_path)
    (tmp_path / "spec.json").write_text(json.dumps(_raw(tmp_path, noise=0.4, epochs=25)))
    r = CliRunner().invoke(app, ["train", str(tmp_path / "spec.json"), "--json"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["evaluate", str(tmp_path / "cae.h5"), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["noisy_input_mse"] == pytest.approx(0.4**2, rel=0.05)  # E[n^2] = sigma^2 over 2048 values
    assert out["denoised_mse"] < 0.5 * out["noisy_input_mse"]  # the model takes most of the noise away
    # clean test images reconstructed: the ordinary loss, against the clean images themselves
    assert out["mse"] == pytest.approx(out["error_mean"], rel=1e-5)
    assert out["mse"] < out["noisy_input_mse"]
    assert len(img) == 64


@pytest.mark.slow
def test_shipped_denoising_cae_beats_the_noisy_input(tmp_path):
    from tests.helpers import train_spec

    s, _ = train_spec("mnist_denoising_cae.toml", tmp_path, "data.subset=2000", "train.epochs=2")
    out = run.evaluate(s.output.checkpoint)
    assert out["denoised_mse"] < 0.5 * out["noisy_input_mse"]
