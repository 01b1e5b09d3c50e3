"""The shipped image specs train as shipped: digits CNN to >= 97% (small, fast); the MNIST, LeNet,
CIFAR-style and ResNet specs on a subset for a short run that must learn well above chance."""

import pytest

from helpers import train_spec
from nnctl import run


def test_digits_cnn_reaches_97_percent(tmp_path):
    s, _ = train_spec("digits_cnn.toml", tmp_path)
    assert run.evaluate(s.output.checkpoint)["accuracy"] >= 0.97


@pytest.mark.parametrize("name,floor", [("mnist_mlp.toml", 0.85), ("mnist_cnn.toml", 0.85), ("lenet5.toml", 0.6)])
def test_mnist_specs_learn_on_a_subset(tmp_path, name, floor):
    s, done = train_spec(name, tmp_path, "data.subset=3000", "train.epochs=2")
    assert done["epochs_run"] == 2
    assert run.evaluate(s.output.checkpoint)["accuracy"] >= floor  # chance is 0.1


@pytest.mark.parametrize("name", ["cifar_style_cnn.toml", "resnet_small.toml"])
def test_rgb_specs_learn_on_the_sample(tmp_path, name):
    s, done = train_spec(name, tmp_path, "train.epochs=5")
    assert done["epochs_run"] == 5
    acc = run.evaluate(s.output.checkpoint)["accuracy"]
    assert acc >= 0.2, acc  # 10 classes: chance is 0.1
