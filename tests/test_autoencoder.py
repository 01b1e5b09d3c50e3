"""Autoencoders: data.target = "input", denoising, reconstruct/embed predictions."""

import numpy as np
import pytest

from nnctl import run
from nnctl import spec as spec_mod
from nnctl.data import load_dataset
from nnctl.errors import DataError


def _arrays(tmp_path, n=48, d=6, seed=0):
    r = np.random.default_rng(seed)
    x = r.integers(0, 256, size=(n, d)).astype(np.uint8)
    np.savez(tmp_path / "train.npz", x=x, y=np.zeros(n, np.int64))
    return x


def _raw(tmp_path, **data):
    return {
        "seed": 1,
        "data": {"train": "train.npz", "target": "input", "rescale": "1/255", **data},
        "model": {
            "layers": [
                {"type": "Dense", "units": 3, "activation": "relu", "name": "code"},
                {"type": "Dense", "units": 6, "activation": "sigmoid"},
            ]
        },
        "train": {"loss": "mse", "optimizer": {"type": "adam", "learning_rate": 0.01}, "epochs": 3, "batch_size": 8},
        "output": {"checkpoint": str(tmp_path / "ae.h5")},
    }


def test_target_is_the_rescaled_input_itself(tmp_path):
    x = _arrays(tmp_path)
    ds = load_dataset(spec_mod.validate(_raw(tmp_path, validation={"split": 0.25}), base_dir=tmp_path))
    assert ds.y_train is ds.x_train and ds.y_val is ds.x_val
    rows = {r.tobytes() for r in (x / 255.0).astype(np.float32)}
    assert all(r.tobytes() in rows for r in np.concatenate([ds.x_train, ds.x_val]))
    assert len(ds.x_train) + len(ds.x_val) == len(x)


def test_tabular_target_is_every_column(tmp_path):
    r = np.random.default_rng(2)
    v = r.normal(size=(20, 3))
    (tmp_path / "t.csv").write_text("a,b,c\n" + "\n".join(",".join(f"{u:.6f}" for u in row) for row in v) + "\n")
    raw = _raw(tmp_path, train="t.csv", rescale=None, normalize="standard")
    ds = load_dataset(spec_mod.validate(raw, base_dir=tmp_path))
    ref = (v - v.mean(axis=0)) / v.std(axis=0)
    np.testing.assert_allclose(ds.x_train, ref, atol=1e-4)
    assert ds.y_train is ds.x_train


@pytest.mark.parametrize(
    "data, loss, message",
    [
        ({"normalize_target": "standard"}, "mse", "normalize_target"),
        ({}, "categorical_crossentropy", "regression loss"),
    ],
)
def test_target_input_rejects_what_cannot_apply(tmp_path, data, loss, message):
    _arrays(tmp_path)
    raw = _raw(tmp_path, **data)
    raw["train"]["loss"] = loss
    raw["model"]["layers"][-1]["activation"] = "softmax" if "categorical" in loss else "sigmoid"
    with pytest.raises(DataError, match=message):
        load_dataset(spec_mod.validate(raw, base_dir=tmp_path))


def test_denoising_alters_the_input_only(tmp_path, monkeypatch):
    from nnctl import train as T

    _arrays(tmp_path)
    raw = _raw(tmp_path, augment={"noise": 0.5})
    raw["train"]["epochs"] = 1
    seen = []
    real = T.Trainer.loss_and_grad

    def spy(self, xb, yb, *a, **kw):
        seen.append((np.array(xb), np.array(yb)))
        return real(self, xb, yb, *a, **kw)

    monkeypatch.setattr(T.Trainer, "loss_and_grad", spy)
    s = spec_mod.validate(raw, base_dir=tmp_path)
    run.train(s)
    clean = {r.tobytes() for r in load_dataset(s).x_train}
    assert seen
    for xb, yb in seen:
        assert all(r.tobytes() in clean for r in yb)  # the target: clean training rows
        assert not any(r.tobytes() in clean for r in xb)  # the input: every row noised
        assert np.abs(xb - yb).mean() > 0.2  # noise of std 0.5 about the clean target


def test_without_augment_input_and_target_batches_are_equal(tmp_path, monkeypatch):
    from nnctl import train as T

    _arrays(tmp_path)
    seen = []
    real = T.Trainer.loss_and_grad

    def spy(self, xb, yb, *a, **kw):
        seen.append((np.array(xb), np.array(yb)))
        return real(self, xb, yb, *a, **kw)

    monkeypatch.setattr(T.Trainer, "loss_and_grad", spy)
    raw = _raw(tmp_path)
    raw["train"]["epochs"] = 1
    run.train(spec_mod.validate(raw, base_dir=tmp_path))
    assert seen and all(np.array_equal(xb, yb) for xb, yb in seen)


# -- predict: reconstructions in the input's units, codes of a named layer -----------------------
def _trained(tmp_path):
    x = _arrays(tmp_path)
    run.train(spec_mod.validate(_raw(tmp_path), base_dir=tmp_path))
    np.save(tmp_path / "new.npy", x[:7])
    import h5py

    with h5py.File(tmp_path / "ae.h5", "r") as f:
        w = {f"{n}/{k}": f["weights"][n][k][()].astype(np.float64) for n in f["weights"] for k in f["weights"][n]}
    names = sorted({k.split("/")[0] for k in w})
    code = [n for n in names if n == "code"][0]
    out = [n for n in names if n != "code"][0]
    h = np.maximum(x[:7] / 255.0 @ w[f"{code}/kernel"] + w[f"{code}/bias"], 0)
    rec = 1 / (1 + np.exp(-(h @ w[f"{out}/kernel"] + w[f"{out}/bias"])))
    return h, rec * 255.0


def _predict(*args):
    from typer.testing import CliRunner

    from nnctl.cli.main import app

    return CliRunner().invoke(app, ["predict", *map(str, args)])


def test_reconstruct_is_in_the_input_units_and_the_default(tmp_path):
    _, ref = _trained(tmp_path)
    for flags in (["--reconstruct"], []):
        r = _predict(tmp_path / "ae.h5", tmp_path / "new.npy", "-f", "npy", "-o", tmp_path / "r.npy", *flags)
        assert r.exit_code == 0, r.output
        np.testing.assert_allclose(np.load(tmp_path / "r.npy"), ref, rtol=1e-4, atol=1e-3)
    r = _predict(tmp_path / "ae.h5", tmp_path / "new.npy", "--reconstruct")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == ",".join(f"x_{i}" for i in range(6)) and len(lines) == 8
    np.testing.assert_allclose(
        np.array([[float(v) for v in ln.split(",")] for ln in lines[1:]]), ref, rtol=1e-4, atol=1e-3
    )


def test_embed_returns_the_bottleneck_codes(tmp_path):
    codes, _ = _trained(tmp_path)
    r = _predict(tmp_path / "ae.h5", tmp_path / "new.npy", "--embed", "code", "-f", "npy", "-o", tmp_path / "c.npy")
    assert r.exit_code == 0, r.output
    np.testing.assert_allclose(np.load(tmp_path / "c.npy"), codes, rtol=1e-4, atol=1e-5)
    r = _predict(tmp_path / "ae.h5", tmp_path / "new.npy", "--embed", "nope")
    assert r.exit_code == 2 and "--embed" in r.output and "code" in r.output


def test_reconstruct_refuses_a_supervised_model(tmp_path):
    x = _arrays(tmp_path)
    raw = _raw(tmp_path)
    raw["data"].pop("target")
    raw["data"]["y"] = "y"
    np.savez(tmp_path / "train.npz", x=x, y=np.arange(len(x), dtype=np.float64))
    raw["model"]["layers"][-1] = {"type": "Dense", "units": 1}
    run.train(spec_mod.validate(raw, base_dir=tmp_path))
    np.save(tmp_path / "new.npy", x[:3])
    r = _predict(tmp_path / "ae.h5", tmp_path / "new.npy", "--reconstruct")
    assert r.exit_code == 2 and "--reconstruct" in r.output


# -- the shipped MNIST autoencoder against PCA with the same code size -----------------------------
def test_mnist_autoencoder_beats_pca_with_the_same_code_size(tmp_path):
    from helpers import load_spec

    s = load_spec("mnist_autoencoder.toml", tmp_path, "data.subset=8000", "train.epochs=12", "data.validation=null")
    run.train(s)
    ds = load_dataset(s)
    a = ds.x_train.reshape(len(ds.x_train), -1).astype(np.float64)
    b = ds.x_test[:1000].reshape(1000, -1).astype(np.float64)
    mu = a.mean(axis=0)
    _, _, vt = np.linalg.svd(a - mu, full_matrices=False)
    v = vt[:32].T  # the code size of the spec's "code" layer
    pca = (((b - mu) @ v @ v.T + mu - b) ** 2).mean()
    restored = run.restore(s.output.checkpoint)
    p, _ = run.predict(restored, ds.x_test[:1000], preprocessed=True)
    codes, _ = run.predict(restored, ds.x_test[:1000], preprocessed=True, embed="code")
    ae = ((p.reshape(1000, -1) - b) ** 2).mean()
    assert codes.shape == (1000, 32)
    assert ae < pca, (ae, pca)
