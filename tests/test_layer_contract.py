"""Every registered layer: build shapes = forward shapes, config round-trips, float64 gradients match
central finite differences. Examples live in tests/layer_examples_*.py; a layer without one fails."""

import importlib
import pathlib

import numpy as np
import pytest

from nnctl.layers import LAYERS, layer_class
from nnctl.testing import check_layer

EXAMPLES: dict = {}
for path in sorted(pathlib.Path(__file__).parent.glob("layer_examples_*.py")):
    EXAMPLES.update(importlib.import_module(path.stem).EXAMPLES)

CASES = [(t, i, c) for t, cases in EXAMPLES.items() for i, c in enumerate(cases)]


def test_every_registered_layer_has_an_example():
    registered = set(LAYERS.names())
    missing = sorted(registered - set(EXAMPLES))
    assert not missing, f"layers without a contract example in tests/layer_examples_*.py: {missing}"


@pytest.mark.parametrize("type_name,index,case", CASES, ids=[f"{t}-{i}" for t, i, _ in CASES])
def test_layer_gradients_and_config(type_name, index, case):
    config, shapes, opts = case
    cls = layer_class(type_name)
    assert cls is not None, f"{type_name} is not registered"
    layer = cls(name="l", **config)
    opts = dict(opts)
    mask = opts.pop("mask", None)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
    check_layer(layer, shapes, mask=mask, **opts)
    cfg = layer.get_config()
    rebuilt = layer_class(cfg.pop("type"))(**cfg)
    assert rebuilt.get_config() == layer.get_config()
