"""The shipped foundation specs learn what they claim (small data, seconds each)."""

import numpy as np

from helpers import train_spec
from nnctl import run


def test_xor_reaches_100_percent(tmp_path):
    s, done = train_spec("xor.toml", tmp_path)
    assert run.evaluate(s.output.checkpoint)["accuracy"] == 1.0


def test_perceptron_rule_separates_a_separable_set(tmp_path):
    s, done = train_spec("perceptron.toml", tmp_path)
    assert run.evaluate(s.output.checkpoint)["accuracy"] == 1.0


def test_iris_mlp_test_accuracy(tmp_path):
    s, done = train_spec("iris_mlp.toml", tmp_path)
    assert run.evaluate(s.output.checkpoint)["accuracy"] >= 0.93


def test_digits_mlp_test_accuracy(tmp_path):
    s, done = train_spec("digits_mlp.toml", tmp_path)
    assert run.evaluate(s.output.checkpoint)["accuracy"] >= 0.95


def test_same_seed_same_weights_and_float32(tmp_path):
    import h5py

    a, _ = train_spec("iris_mlp.toml", tmp_path / "a", "train.epochs=3")
    b, _ = train_spec("iris_mlp.toml", tmp_path / "b", "train.epochs=3")
    c, _ = train_spec("iris_mlp.toml", tmp_path / "c", "train.epochs=3", "seed=5")
    with (
        h5py.File(a.output.checkpoint) as fa,
        h5py.File(b.output.checkpoint) as fb,
        h5py.File(c.output.checkpoint) as fc,
    ):
        ka, kb, kc = (f["weights/dense/kernel"][()] for f in (fa, fb, fc))
    assert ka.dtype == np.float32
    np.testing.assert_array_equal(ka, kb)
    assert not np.array_equal(ka, kc)
