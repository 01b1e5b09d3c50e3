"""Every registered layer against the layer contract (nnctl/layers/base.py), on the examples in
tests/layer_examples_*.py (a registered layer without one fails):

- build shapes = forward shapes, and float64 gradients match central finite differences (nnctl.testing);
- the config keeps every key the example gave, with its value, and rebuilds the same layer;
- backward writes into the gradient arrays it was given (views of the model's flat buffer), never
  rebinding them, and writes every element;
- inference is deterministic, and training differs from it exactly for the layers that regularise or
  normalise by the batch (dropout, noise, batch statistics);
- a layer whose output drops or resizes the steps axis declares its mask (its own ``compute_mask``), and
  every output mask is (N, T) of the output's steps, or None.
"""

import importlib
import pathlib

import numpy as np
import pytest

from nnctl import backend as B
from nnctl.layers import LAYERS, layer_class
from nnctl.layers.base import Layer
from nnctl.testing import check_layer

EXAMPLES: dict = {}
for path in sorted(pathlib.Path(__file__).parent.glob("layer_examples_*.py")):
    EXAMPLES.update(importlib.import_module(path.stem).EXAMPLES)

CASES = [(t, i, c) for t, cases in EXAMPLES.items() for i, c in enumerate(cases)]
IDS = [f"{t}-{i}" for t, i, _ in CASES]

#: layers whose training forward differs from inference by design: dropout and noise draw a mask or noise,
#: BatchNormalization normalises by the batch's own statistics (and updates its moving ones)
TRAINING_DIFFERS = {
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "GaussianNoise",
    "GaussianDropout",
    "BatchNormalization",
}
#: keys of any layer that drop values in training when positive (recurrent inputs, attention weights)
DROPOUT_KEYS = ("dropout", "recurrent_dropout")

#: a key the constructor folds into another (Keras's older spelling): (type, example key) -> the key that
#: carries its value in the config
FOLDED_KEYS = {("LeakyReLU", "alpha"): "negative_slope", ("MultiHeadAttention", "use_causal_mask"): "causal"}


def _inputs(shapes, opts, seed=7):
    """Host-independent random inputs for the example's batch shapes (integer ids where it says so)."""
    rng = np.random.default_rng(seed)
    ints = opts.get("int_inputs", ())
    return [
        B.asarray(rng.integers(0, opts.get("int_high", 5), size=s) if i in ints else rng.normal(size=s))
        for i, s in enumerate(shapes)
    ]


def _built(type_name, case):
    """The example's layer, built in float64 and gradient-checked; (layer, check options without the mask, mask)."""
    config, shapes, opts = case
    layer = layer_class(type_name)(name="l", **config)
    opts = dict(opts)
    mask = opts.pop("mask", None)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
    check_layer(layer, shapes, mask=mask, **opts)
    return layer, opts, mask


def _as_list(y):
    return list(y) if isinstance(y, (list, tuple)) else [y]


def _same_value(expected, found) -> bool:
    """``found`` carries ``expected``: equal scalars, lists equal to tuples, a table a superset of the expected
    one (the config adds the defaults of a wrapped layer)."""
    if isinstance(expected, dict):
        return isinstance(found, dict) and all(_same_value(v, found.get(k)) for k, v in expected.items())
    if isinstance(expected, (list, tuple)):
        return (
            isinstance(found, (list, tuple))
            and len(found) == len(expected)
            and all(_same_value(e, f) for e, f in zip(expected, found))
        )
    if isinstance(expected, bool) or not isinstance(expected, (int, float)):
        return type(expected) is type(found) and expected == found
    return isinstance(found, (int, float)) and not isinstance(found, bool) and expected == found  # 2 == 2.0


def _differs_in_training(type_name, config) -> bool:
    """Whether the example's training forward is meant to differ from inference."""
    if type_name in TRAINING_DIFFERS or any(float(config.get(k) or 0) > 0 for k in DROPOUT_KEYS):
        return True
    inner = config.get("layer")  # a wrapper differs when the layer it wraps does
    return isinstance(inner, dict) and _differs_in_training(inner.get("type", ""), inner)


def test_every_registered_layer_has_an_example():
    registered = set(LAYERS.names())
    missing = sorted(registered - set(EXAMPLES))
    assert not missing, f"layers without a contract example in tests/layer_examples_*.py: {missing}"


@pytest.mark.parametrize("type_name,index,case", CASES, ids=IDS)
def test_layer_gradients_and_config(type_name, index, case):
    config = case[0]
    layer, _, _ = _built(type_name, case)
    cfg = layer.get_config()
    assert cfg["type"] == type_name
    # the example's own keys, not the config compared with itself: a value stored under another attribute
    # name (``self._rate``) vanishes from the config, and the rebuilt layer silently takes the default
    for key, value in config.items():
        carried = FOLDED_KEYS.get((type_name, key), key)
        assert carried in cfg, f"{type_name}.get_config() lost the key {key!r} (example {config})"
        assert _same_value(value, cfg[carried]), (
            f"{type_name}.get_config()[{carried!r}] = {cfg[carried]!r}, given {value!r}"
        )
    body = {k: v for k, v in cfg.items() if k != "type"}
    rebuilt = layer_class(type_name)(**body)
    assert rebuilt.get_config() == cfg


@pytest.mark.parametrize("type_name,index,case", CASES, ids=IDS)
def test_backward_writes_into_the_flat_gradient_buffer(type_name, index, case):
    """Backward must write into the arrays in ``layer.grads`` (a model hands it views of ``flat_grads``, which
    the optimizer reads and a data-parallel run allreduces): an array rebound to a new one is lost there."""
    _, shapes, _ = case
    layer, opts, mask = _built(type_name, case)
    if not layer.params:
        return
    # what Model.to_device does: one flat buffer, each gradient a view of it; NaN shows an element never written
    total = sum(int(p.size) for p in layer.params.values())
    flat = B.xp.full(total, np.nan, dtype=np.float64)
    views, off = {}, 0
    for k, p in layer.params.items():
        views[k] = flat[off : off + p.size].reshape(p.shape)
        off += p.size
    layer.grads = dict(views)
    inputs = _inputs(shapes, opts)
    y, cache = layer.forward(
        *inputs, training=opts.get("training", False), mask=None if mask is None else B.asarray(mask)
    )
    rng = np.random.default_rng(3)
    seeds = [B.asarray(rng.normal(size=yi.shape)) for yi in _as_list(y)]
    layer.backward(seeds if isinstance(y, (list, tuple)) else seeds[0], cache)
    rebound = sorted(k for k in views if layer.grads.get(k) is not views[k])
    assert not rebound, f"{type_name}.backward rebound grads {rebound} instead of writing into the given arrays"
    unwritten = sorted(k for k in views if np.isnan(B.to_numpy(views[k])).any())
    assert not unwritten, f"{type_name}.backward left elements of grads {unwritten} unwritten"


@pytest.mark.parametrize("type_name,index,case", CASES, ids=IDS)
def test_training_and_inference_modes(type_name, index, case):
    config, shapes, _ = case
    layer, opts, mask = _built(type_name, case)
    inputs = _inputs(shapes, opts)
    m = None if mask is None else B.asarray(mask)

    def run(training):
        return [B.to_numpy(yi).copy() for yi in _as_list(layer.forward(*inputs, training=training, mask=m)[0])]

    first, second = run(False), run(False)  # before training mode: BatchNormalization's update moves the statistics
    assert all(np.array_equal(a, b) for a, b in zip(first, second)), f"{type_name}: inference is not deterministic"
    trained = run(True)
    same = all(a.shape == b.shape and np.allclose(a, b, rtol=1e-12, atol=1e-12) for a, b in zip(first, trained))
    if _differs_in_training(type_name, config):
        assert not same, f"{type_name} {config}: training output equals inference output (is `training` ignored?)"
    else:
        assert same, (
            f"{type_name} {config}: training output differs from inference; a layer meant to differ belongs in "
            "TRAINING_DIFFERS"
        )


@pytest.mark.parametrize("type_name,index,case", CASES, ids=IDS)
def test_output_mask_fits_the_output(type_name, index, case):
    """A padding mask is (N, T) over the steps axis (the first after the batch). A layer that keeps that axis may
    pass it on (the base class does); one that drops or resizes it must say what its mask becomes."""
    _, shapes, _ = case
    layer, opts, _ = _built(type_name, case)
    inputs = _inputs(shapes, opts)
    y, _ = layer.forward(*inputs, training=False, mask=None)
    out = _as_list(y)[0]  # a multi-output layer's mask belongs to its first output
    first = tuple(shapes[0][1:])
    keeps_steps = len(first) >= 2 and out.ndim >= 3 and out.shape[1] == first[0]
    if len(first) >= 2 and not keeps_steps:
        assert type(layer).compute_mask is not Layer.compute_mask, (
            f"{type_name} maps steps {first[0]} to output shape {tuple(out.shape[1:])} but inherits the "
            "pass-through compute_mask: define compute_mask (None when no steps axis is left)"
        )
    rng = np.random.default_rng(5)
    masks = []
    for s in shapes:
        if len(s) >= 3:
            mk = rng.random(s[:2]) < 0.7
            mk[:, 0] = True  # every row keeps one real step
            masks.append(B.asarray(mk))
        else:
            masks.append(None)
    if masks[0] is None and not layer.mask_per_input:
        return
    result = layer.compute_mask(masks if layer.mask_per_input else masks[0], inputs)
    if result is None:
        return
    assert out.ndim >= 3, f"{type_name}: output {tuple(out.shape)} has no steps axis, yet compute_mask returned one"
    assert tuple(result.shape) == (out.shape[0], out.shape[1]), (
        f"{type_name}: mask {tuple(result.shape)} does not fit output {tuple(out.shape)} (expected (N, T))"
    )


def test_concatenate_joins_masks_along_the_steps_and_ors_them_across_features():
    """Keras's Concatenate.compute_mask: masks concatenated along the steps axis; across features a step is real
    where any input's is, an input without a mask counting every step real."""
    # masks and inputs live on the active device, as in a forward pass
    a = B.asarray(np.array([[True, True, False], [True, False, False]]))
    b = B.asarray(np.array([[True, False], [False, False]]))
    steps = layer_class("Concatenate")(axis=1)
    check_layer(steps, [(2, 3, 2), (2, 2, 2)])  # builds it (through the contract's own path)
    xs = [B.xp.zeros((2, 3, 2)), B.xp.zeros((2, 2, 2))]
    assert steps.compute_mask([a, b], xs).tolist() == [
        [True, True, False, True, False],
        [True, False, False, False, False],
    ]
    assert steps.compute_mask([a, None], xs).tolist() == [
        [True, True, False, True, True],
        [True, False, False, True, True],
    ]
    feats = layer_class("Concatenate")(axis=-1)
    check_layer(feats, [(2, 3, 2), (2, 3, 4)])
    xs = [B.xp.zeros((2, 3, 2)), B.xp.zeros((2, 3, 4))]
    c = B.asarray(np.array([[False, True, False], [True, False, False]]))
    assert feats.compute_mask([a, c], xs).tolist() == [[True, True, False], [True, False, False]]
    assert feats.compute_mask([a, None], xs).tolist() == [[True] * 3, [True] * 3]
    assert feats.compute_mask([None, None], xs) is None
