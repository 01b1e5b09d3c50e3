"""Write examples/data/vgg_mini_notop.h5: a small VGG-style convolutional base in the Keras weights-file layout
that keras.applications uses (vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5), standing in for the
ImageNet file since nothing can be downloaded here.

The base (block1_conv1..block2_conv2, 3x3 convolutions, 8 and 16 filters, VGG16's layer names) is
pretrained with nnctl for a few epochs on examples/data/cifar_sample/train with a throwaway head, then
written as a legacy Keras HDF5 weights file: root attributes layer_names, backend and keras_version, one
group per layer with a weight_names attribute (block1_conv1/kernel:0, block1_conv1/bias:0) naming its
datasets, kernels (KH, KW, C_in, C_out) as Keras stores them. specs/transfer_vgg_keras.toml loads it
with model.init_from.
Usage: python examples/make_vgg_weights.py   (seeded; about two minutes on 2 CPU cores)
"""

import pathlib
import tempfile

import h5py
import numpy as np

from nnctl import run, spec
from nnctl.checkpoint import Checkpoint

HERE = pathlib.Path(__file__).resolve().parent
OUT = HERE / "data" / "vgg_mini_notop.h5"
BASE = [
    ("block1_conv1", 8),
    ("block1_conv2", 8),
    ("block1_pool", None),
    ("block2_conv1", 16),
    ("block2_conv2", 16),
    ("block2_pool", None),
]


def _layers() -> list[dict]:
    layers = []
    for name, filters in BASE:
        if filters is None:
            layers.append({"type": "MaxPooling2D", "name": name, "pool_size": 2})
        else:
            layers.append(
                {
                    "type": "Conv2D",
                    "name": name,
                    "filters": filters,
                    "kernel_size": 3,
                    "padding": "same",
                    "activation": "relu",
                }
            )
    return layers + [{"type": "Flatten"}, {"type": "Dense", "units": 10, "activation": "softmax"}]


def pretrain(folder: pathlib.Path) -> dict:
    raw = {
        "name": "vgg-mini-pretrain",
        "seed": 0,
        "data": {"train": str(HERE / "data" / "cifar_sample" / "train"), "color_mode": "rgb", "rescale": "1/255"},
        "model": {"input_shape": [32, 32, 3], "layers": _layers()},
        "train": {
            "loss": "categorical_crossentropy",
            "optimizer": {"type": "adam", "learning_rate": 0.003},
            "epochs": 15,
            "batch_size": 32,
        },
        "output": {"checkpoint": str(folder / "pretrain.h5"), "run_dir": str(folder / "run")},
    }
    s = spec.validate(raw, "make_vgg_weights", base_dir=HERE)
    done = run.train(s)
    return Checkpoint(done["checkpoint"]).weights


def write_keras_weights(weights: dict, path: pathlib.Path) -> None:
    """The keras.applications layout: every layer listed, pooling layers with no weights."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n, _ in BASE])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"
        for name, filters in BASE:
            g = f.create_group(name)
            names = [] if filters is None else [f"{name}/kernel:0", f"{name}/bias:0"]
            g.attrs["weight_names"] = np.array([n.encode() for n in names])
            for wname in names:
                param = wname.split("/")[1].split(":")[0]
                g.create_dataset(wname, data=weights[f"{name}/{param}"].astype(np.float32))


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        write_keras_weights(pretrain(pathlib.Path(tmp)), OUT)
    print(f"wrote {OUT}")
