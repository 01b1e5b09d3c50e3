"""Conv3D and the 3-D pooling/upsampling layers against hand-computed cases and, in float64, PyTorch CPU
(our NDHWC / (KD, KH, KW, Cin, F) against torch's NCDHW / (F, Cin, KD, KH, KW))."""

import numpy as np
import pytest

from helpers import dev, host
from nnctl.layers import layer_class
from nnctl.testing import build_layer


def make(type_name, config, in_shape, dtype=np.float64, seed=0):
    layer = layer_class(type_name)(name="l", **config)
    out = build_layer(layer, [in_shape], dtype, np.random.default_rng(seed))
    layer.params = {k: dev(v) for k, v in layer.params.items()}
    layer.init_grads()
    return layer, out


def run(layer, x, g):
    y, cache = layer.forward(dev(x))
    dx = layer.backward(dev(g), cache)[0]
    return host(y), host(dx)


def test_conv3d_pointwise_is_a_matrix_product():
    rng = np.random.default_rng(1)
    layer, out = make("Conv3D", {"filters": 3, "kernel_size": 1}, (2, 3, 4, 5))
    x = rng.normal(size=(2, 2, 3, 4, 5))
    y, _ = run(layer, x, np.ones((2, 2, 3, 4, 3)))
    w, b = host(layer.params["kernel"]).reshape(5, 3), host(layer.params["bias"])
    assert out == (2, 3, 4, 3)
    np.testing.assert_allclose(y, x @ w + b, rtol=1e-12)


def test_upsampling3d_and_pooling_by_hand():
    x = np.arange(8, dtype=np.float64).reshape(1, 2, 2, 2, 1)  # x[d, h, w] = 4d + 2h + w
    up, out = make("UpSampling3D", {"size": [2, 1, 1]}, (2, 2, 2, 1))
    y, dx = run(up, x, np.ones((1, 4, 2, 2, 1)))
    assert out == (4, 2, 2, 1)
    np.testing.assert_array_equal(y[0, :, 0, 0, 0], [0, 0, 4, 4])
    np.testing.assert_array_equal(dx, np.full_like(x, 2.0))  # each voxel feeds two outputs
    mx, _ = make("MaxPooling3D", {"pool_size": 2}, (2, 2, 2, 1))
    y, dx = run(mx, x, np.ones((1, 1, 1, 1, 1)))
    assert y.ravel().tolist() == [7.0] and dx.ravel().tolist() == [0] * 7 + [1]
    av, _ = make("AveragePooling3D", {"pool_size": 2, "strides": 1, "padding": "same"}, (2, 2, 2, 1))
    y, _ = run(av, x, np.ones((1, 2, 2, 2, 1)))
    assert y[0, 1, 1, 1, 0] == 7.0 and y[0, 0, 0, 0, 0] == 3.5  # the corner window holds one real voxel


try:
    import torch

    F = torch.nn.functional
except ImportError:  # the hand-computed cases above still run
    torch = None


def needs_torch():
    if torch is None:
        pytest.skip("needs PyTorch CPU (pip install torch==2.13.0)")


def to_t(a):
    return torch.tensor(np.ascontiguousarray(np.moveaxis(a, -1, 1)), dtype=torch.float64, requires_grad=True)


def from_t(t):
    return np.moveaxis(t.detach().numpy(), 1, -1)


def keras_same_pad(size, k, s, d):
    out = -(-size // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


CONV_CASES = [
    ({"filters": 4, "kernel_size": 3}, (5, 6, 5, 2)),
    ({"filters": 3, "kernel_size": [2, 3, 1], "strides": [2, 1, 2]}, (5, 4, 5, 3)),
    ({"filters": 2, "kernel_size": 2, "dilation_rate": 2}, (5, 5, 4, 2)),
    ({"filters": 3, "kernel_size": 2, "padding": "same"}, (3, 4, 5, 2)),
    ({"filters": 2, "kernel_size": 3, "strides": 2, "padding": "same"}, (5, 4, 6, 3)),
]


@pytest.mark.torch
@pytest.mark.parametrize("config, shape", CONV_CASES)
def test_conv3d_against_torch(config, shape):
    needs_torch()
    rng = np.random.default_rng(0)
    layer, out = make("Conv3D", config, shape)
    x = rng.normal(size=(2, *shape))
    g = rng.normal(size=(2, *out))
    y, dx = run(layer, x, g)
    w = host(layer.params["kernel"])
    k, s, d = (
        np.broadcast_to(np.asarray(config.get(key, v)), 3).tolist()
        for key, v in (("kernel_size", 1), ("strides", 1), ("dilation_rate", 1))
    )
    xt = to_t(x)
    xin = xt
    if config.get("padding") == "same":  # Keras pads the extra voxel at the end; torch pads symmetrically
        pads = [keras_same_pad(n, kk, ss, dd) for n, kk, ss, dd in zip(shape[:3], k, s, d)]
        xin = F.pad(xt, [p for pair in reversed(pads) for p in pair])
    wt = torch.tensor(np.transpose(w, (4, 3, 0, 1, 2)).copy(), requires_grad=True)
    bt = torch.tensor(host(layer.params["bias"]), requires_grad=True)
    yt = F.conv3d(xin, wt, bt, stride=s, dilation=d)
    yt.backward(to_t(g).detach())
    np.testing.assert_allclose(y, from_t(yt), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, from_t(xt.grad), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        host(layer.grads["kernel"]), np.transpose(wt.grad.numpy(), (2, 3, 4, 1, 0)), rtol=1e-10, atol=1e-12
    )
    np.testing.assert_allclose(host(layer.grads["bias"]), bt.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.torch
@pytest.mark.parametrize(
    "type_name, config, shape",
    [
        ("MaxPooling3D", {"pool_size": 2}, (4, 6, 4, 2)),
        ("MaxPooling3D", {"pool_size": 3, "strides": 2}, (5, 7, 5, 2)),
        ("AveragePooling3D", {"pool_size": 2}, (4, 4, 6, 3)),
        ("AveragePooling3D", {"pool_size": [3, 2, 3], "strides": [2, 1, 2]}, (5, 4, 5, 1)),
        ("UpSampling3D", {"size": [2, 3, 1]}, (2, 3, 4, 2)),
    ],
)
def test_pool3d_against_torch(type_name, config, shape):
    needs_torch()
    rng = np.random.default_rng(2)
    layer, out = make(type_name, config, shape)
    x = rng.normal(size=(2, *shape))
    g = rng.normal(size=(2, *out))
    y, dx = run(layer, x, g)
    xt = to_t(x)
    if type_name == "UpSampling3D":
        yt = F.interpolate(xt, scale_factor=tuple(float(v) for v in config["size"]), mode="nearest")
    else:
        p = config["pool_size"]
        stride = config.get("strides", p)
        op = F.max_pool3d if type_name == "MaxPooling3D" else F.avg_pool3d
        yt = op(xt, p, stride)
    yt.backward(to_t(g).detach())
    assert y.shape == (2, *out)
    np.testing.assert_allclose(y, from_t(yt), rtol=1e-12)
    np.testing.assert_allclose(dx, from_t(xt.grad), rtol=1e-12, atol=1e-14)
