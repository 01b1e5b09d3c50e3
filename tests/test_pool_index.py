"""Max pooling's training path (a 1-byte index of each window's first maximum, kept at forward and written
through in backward): float64 gradients against finite differences, the first-maximum rule on ties
against a loop written here and against PyTorch CPU, and the inference-forward fallback equal to it."""

import numpy as np
import pytest

from helpers import dev, host
from nnctl.layers import layer_class
from nnctl.testing import build_layer, check_layer

CASES = [
    ("MaxPooling2D", {"pool_size": 2}, (6, 8, 3)),  # windows tile the input: dx written once, no zeros
    ("MaxPooling2D", {"pool_size": 2}, (7, 5, 2)),  # a row and a column no window covers
    ("MaxPooling2D", {"pool_size": 3, "strides": 2}, (7, 9, 2)),  # overlapping windows add up
    ("MaxPooling2D", {"pool_size": 2, "strides": 3}, (8, 8, 1)),  # gaps between windows
    ("MaxPooling2D", {"pool_size": [2, 3], "padding": "same"}, (5, 7, 2)),  # -inf padding
    ("MaxPooling2D", {"pool_size": [3, 2], "strides": 1, "padding": "same"}, (4, 4, 1)),
    ("MaxPooling1D", {"pool_size": 2}, (9, 3)),
    ("MaxPooling1D", {"pool_size": 3, "strides": 1, "padding": "same"}, (6, 2)),
]


def make(type_name, config, shape, dtype=np.float32):
    layer = layer_class(type_name)(name="p", **config)
    out = build_layer(layer, [shape], dtype=dtype)
    layer.init_grads()
    return layer, out


def reference_max_pool(x, pool, strides, pads, g):
    """y and dx by explicit loops over windows: the gradient goes to the first maximum in row-major order."""
    x = np.pad(x, ((0, 0), *pads, (0, 0)), constant_values=-np.inf)
    n, h, w, c = x.shape
    oh, ow = g.shape[1:3]
    y, dx = np.empty(g.shape), np.zeros(x.shape)
    for b in range(n):
        for p in range(oh):
            for q in range(ow):
                for ch in range(c):
                    win = x[b, p * strides[0] : p * strides[0] + pool[0], q * strides[1] : q * strides[1] + pool[1], ch]
                    i, j = divmod(int(np.argmax(win)), pool[1])  # np.argmax: first occurrence, row-major
                    y[b, p, q, ch] = win[i, j]
                    dx[b, p * strides[0] + i, q * strides[1] + j, ch] += g[b, p, q, ch]
    (t, bt), (left, r) = pads
    return y, dx[:, t : h - bt, left : w - r]


def _image(a, rank):
    return a if rank == 2 else a[:, None]


@pytest.mark.parametrize("type_name,config,shape", CASES)
def test_training_gradients_match_finite_differences(type_name, config, shape):
    layer = layer_class(type_name)(name="p", **config)
    check_layer(layer, [(2, *shape)], training=True)


@pytest.mark.parametrize("type_name,config,shape", CASES)
def test_ties_go_to_the_first_maximum(type_name, config, shape):
    rng = np.random.default_rng(3)
    layer, out = make(type_name, config, shape)
    # relu outputs and small integers: most windows hold tied maxima (zeros, repeated values)
    x = np.maximum(rng.integers(-3, 3, size=(3, *shape)), 0).astype(np.float32)
    g = rng.normal(size=(3, *out)).astype(np.float32)
    y_ref, dx_ref = reference_max_pool(
        _image(x, layer.rank), layer._p, layer._s, layer._pads, _image(g, layer.rank).astype(np.float64)
    )
    for training in (True, False):  # index kept at forward, or found again in backward
        y, cache = layer.forward(dev(x), training=training)
        dx = host(layer.backward(dev(g), cache)[0])
        np.testing.assert_array_equal(_image(host(y), layer.rank), y_ref)
        np.testing.assert_allclose(_image(dx, layer.rank), dx_ref, rtol=1e-6, atol=1e-6)
        assert dx.dtype == np.float32 and host(y).dtype == np.float32


def test_index_is_one_byte_and_replaces_the_input_in_the_cache():
    layer, _ = make("MaxPooling2D", {"pool_size": 2}, (24, 24, 8))
    x = dev(np.random.default_rng(0).normal(size=(4, 24, 24, 8)).astype(np.float32))
    _, cache = layer.forward(x, training=True)
    idx = cache[0]
    assert idx.dtype == np.int8 and idx.shape == (4, 12, 12, 8)
    assert not any(a is not None and getattr(a, "size", 0) == x.size for a in cache[:2])


def test_large_windows_use_a_wider_index():
    layer, out = make("MaxPooling2D", {"pool_size": 12}, (12, 12, 1))  # 144 offsets > int8's 127
    x = np.zeros((1, 12, 12, 1), np.float32)
    x[0, 11, 11, 0] = 1.0  # the last offset, 143
    y, cache = layer.forward(dev(x), training=True)
    dx = host(layer.backward(dev(np.ones((1, *out), np.float32)), cache)[0])
    assert host(cache[0]).ravel()[0] == 143 and dx[0, 11, 11, 0] == 1 and dx.sum() == 1


@pytest.mark.torch
@pytest.mark.parametrize(
    "type_name,config,shape", [c for c in CASES if c[0] == "MaxPooling2D" and "padding" not in c[1]]
)
def test_training_path_with_ties_matches_torch(type_name, config, shape):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    layer, out = make(type_name, config, shape)
    x = np.maximum(rng.integers(-2, 3, size=(2, *shape)), 0).astype(np.float32)
    g = rng.normal(size=(2, *out)).astype(np.float32)
    y, cache = layer.forward(dev(x), training=True)
    dx = host(layer.backward(dev(g), cache)[0])
    xt = torch.tensor(np.ascontiguousarray(np.moveaxis(x, -1, 1)), requires_grad=True)
    yt = torch.nn.functional.max_pool2d(xt, layer._p, layer._s)  # CPU kernel: first maximum on ties
    (yt * torch.tensor(np.ascontiguousarray(np.moveaxis(g, -1, 1)))).sum().backward()
    np.testing.assert_array_equal(host(y), np.moveaxis(yt.detach().numpy(), 1, -1))
    np.testing.assert_allclose(dx, np.moveaxis(xt.grad.numpy(), 1, -1), rtol=1e-6, atol=1e-6)
