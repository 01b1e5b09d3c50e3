"""Layer families; importing this package registers every layer under its spec name."""

import importlib

from nnctl.layers.base import LAYERS, Layer, layer_class, register  # noqa: F401

# one module per family; a family that is not written yet is simply absent
for _family in (
    "core",
    "activation_layers",
    "conv",
    "pool",
    "norm",
    "recurrent",
    "embedding",
    "attention",
    "conv_extra",
    "conv_transpose",
    "shape",
    "merge",
    "noise",
    "groupnorm",
    "wrappers",
    "attention_extra",
    "conv3d",
):
    try:
        importlib.import_module(f"nnctl.layers.{_family}")
    except ModuleNotFoundError as exc:
        if exc.name != f"nnctl.layers.{_family}":
            raise
