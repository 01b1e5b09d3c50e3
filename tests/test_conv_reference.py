"""Forward values (and float32 gradients) of the conv, pooling and normalisation layers against
hand-computed cases and, where installed, PyTorch CPU (our NHWC / (KH, KW, Cin, F) against torch's
NCHW / (F, Cin, KH, KW))."""

import numpy as np
import pytest

from helpers import dev, host
from nnctl.layers import layer_class
from nnctl.testing import build_layer


def make(type_name, config, in_shape, seed=0):
    """A float32 layer built for input shape ``in_shape`` (no batch axis), its parameters and state moved to
    the device (set them by hand with device arrays), with gradient arrays."""
    layer = layer_class(type_name)(name="l", **config)
    out = build_layer(layer, [in_shape], np.float32, np.random.default_rng(seed), np.random.default_rng(seed))
    layer.params = {k: dev(v) for k, v in layer.params.items()}
    layer.state = {k: dev(v) for k, v in layer.state.items()}
    layer.init_grads()
    return layer, out


def run(layer, x, g=None, mask=None, **kw):
    """forward (and backward of upstream gradient ``g``) on the device from host data; host results."""
    y, cache = layer.forward(dev(x, np.float32), mask=dev(mask), **kw)
    dx = layer.backward(dev(g, np.float32), cache)[0] if g is not None else None
    return host(y), host(dx)


# -- hand-computed cases ---------------------------------------------------------------------------
X33 = np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3, 1)  # [[1,2,3],[4,5,6],[7,8,9]]


def test_conv2d_valid_by_hand():
    layer, out = make("Conv2D", {"filters": 1, "kernel_size": 2}, (3, 3, 1))
    layer.params["kernel"][...] = dev(np.array([[1, 2], [3, 4]], np.float32).reshape(2, 2, 1, 1))
    layer.params["bias"][...] = 0.5
    y, _ = run(layer, X33)
    assert out == (2, 2, 1)
    # y[0,0] = 1*1 + 2*2 + 3*4 + 4*5 = 37, and each step right adds 10, each step down 30
    np.testing.assert_array_equal(y[0, :, :, 0], [[37.5, 47.5], [67.5, 77.5]])


def test_conv2d_same_even_kernel_pads_bottom_right():
    layer, out = make("Conv2D", {"filters": 1, "kernel_size": 2, "padding": "same", "use_bias": False}, (3, 3, 1))
    layer.params["kernel"][...] = dev(np.array([[1, 2], [3, 4]], np.float32).reshape(2, 2, 1, 1))
    y, _ = run(layer, X33)
    assert out == (3, 3, 1)
    # the last row/column see the zero pad below/right: y[0,2] = 3*1 + 6*3, y[2,2] = 9*1
    np.testing.assert_array_equal(y[0, :, :, 0], [[37, 47, 21], [67, 77, 33], [23, 26, 9]])


def test_conv2d_stride_same_and_backward_by_hand():
    layer, out = make(
        "Conv2D", {"filters": 1, "kernel_size": 1, "strides": 2, "padding": "same", "use_bias": False}, (3, 3, 1)
    )
    layer.params["kernel"][...] = 2
    y, dx = run(layer, X33, g=np.ones((1, 2, 2, 1)))
    assert out == (2, 2, 1)
    np.testing.assert_array_equal(y[0, :, :, 0], [[2, 6], [14, 18]])
    np.testing.assert_array_equal(dx[0, :, :, 0], [[2, 0, 2], [0, 0, 0], [2, 0, 2]])
    assert host(layer.grads["kernel"]).ravel()[0] == 1 + 3 + 7 + 9


def test_conv1d_dilation_by_hand():
    layer, out = make("Conv1D", {"filters": 1, "kernel_size": 2, "dilation_rate": 2, "use_bias": False}, (5, 1))
    layer.params["kernel"][...] = dev(np.array([1, 10], np.float32).reshape(2, 1, 1))
    y, _ = run(layer, np.arange(1, 6).reshape(1, 5, 1))
    assert out == (3, 1)
    np.testing.assert_array_equal(y[0, :, 0], [31, 42, 53])  # x[t] + 10 * x[t + 2]


def test_pooling_by_hand():
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    y, _ = run(make("MaxPooling2D", {"pool_size": 2}, (4, 4, 1))[0], x)
    np.testing.assert_array_equal(y[0, :, :, 0], [[5, 7], [13, 15]])
    y, _ = run(make("AveragePooling2D", {"pool_size": 2}, (4, 4, 1))[0], x)
    np.testing.assert_array_equal(y[0, :, :, 0], [[2.5, 4.5], [10.5, 12.5]])
    x9 = X33 - 1  # [[0,1,2],[3,4,5],[6,7,8]]; "same" pads one row and column at the bottom/right
    y, _ = run(make("MaxPooling2D", {"pool_size": 2, "padding": "same"}, (3, 3, 1))[0], -x9)
    np.testing.assert_array_equal(y[0, :, :, 0], [[0, -2], [-6, -8]])  # -inf padding never wins
    y, _ = run(make("AveragePooling2D", {"pool_size": 2, "padding": "same"}, (3, 3, 1))[0], x9)
    np.testing.assert_array_equal(y[0, :, :, 0], [[2, 3.5], [6.5, 8]])  # padding not counted


def test_max_pool_ties_route_to_first_maximum():
    layer, _ = make("MaxPooling2D", {"pool_size": 2}, (2, 2, 1))
    y, dx = run(layer, np.ones((1, 2, 2, 1)), g=np.full((1, 1, 1, 1), 3.0))
    np.testing.assert_array_equal(dx[0, :, :, 0], [[3, 0], [0, 0]])
    layer, _ = make("MaxPooling2D", {"pool_size": 2, "strides": 1}, (2, 3, 1))  # overlapping windows add up
    y, dx = run(layer, [[[[1], [5], [1]], [[1], [1], [1]]]], g=[[[[1], [2]]]])
    np.testing.assert_array_equal(dx[0, :, :, 0], [[0, 3, 0], [0, 0, 0]])


def test_global_pooling_1d_mask_by_hand():
    x = np.array([[[1.0], [3.0], [100.0]], [[2.0], [4.0], [6.0]]])
    mask = np.array([[True, True, False], [True, True, True]])
    avg, _ = make("GlobalAveragePooling1D", {}, (3, 1))
    y, dx = run(avg, x, g=np.ones((2, 1)), mask=mask)
    np.testing.assert_allclose(y[:, 0], [2, 4])
    np.testing.assert_allclose(dx[:, :, 0], [[0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3]], rtol=1e-6)
    mx, _ = make("GlobalMaxPooling1D", {}, (3, 1))
    y, dx = run(mx, x, g=np.ones((2, 1)), mask=mask)
    np.testing.assert_array_equal(y[:, 0], [3, 6])
    np.testing.assert_array_equal(dx[:, :, 0], [[0, 1, 0], [0, 0, 1]])
    assert avg.compute_mask(dev(mask), [dev(x)]) is None and mx.compute_mask(dev(mask), [dev(x)]) is None


def test_batchnorm_training_and_moving_statistics():
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 2.0, size=(8, 4, 4, 3)).astype(np.float32)
    layer, _ = make("BatchNormalization", {}, (4, 4, 3))
    y, dx = run(layer, x, g=np.ones_like(x), training=True)
    np.testing.assert_allclose(y.reshape(-1, 3).mean(0), 0, atol=1e-5)
    var = x.reshape(-1, 3).var(0)
    np.testing.assert_allclose(y.reshape(-1, 3).var(0), var / (var + 1e-3), rtol=1e-4)
    moving_mean, moving_var = host(layer.state["moving_mean"]), host(layer.state["moving_variance"])
    np.testing.assert_allclose(moving_mean, 0.01 * x.reshape(-1, 3).mean(0), rtol=1e-5)
    np.testing.assert_allclose(moving_var, 0.99 + 0.01 * var, rtol=1e-5)
    np.testing.assert_allclose(dx, 0, atol=1e-5)  # a constant upstream gradient is normalised away
    yi, _ = run(layer, x)  # inference uses the moving statistics
    np.testing.assert_allclose(yi, (x - moving_mean) / np.sqrt(moving_var + 1e-3), rtol=1e-5, atol=1e-5)
    assert set(layer.state) == {"moving_mean", "moving_variance"} and set(layer.params) == {"gamma", "beta"}


def test_col2im_is_the_adjoint_of_im2col():
    from nnctl.ops import im2col as K

    rng = np.random.default_rng(6)
    for kernel, strides, dilation in [((3, 3), (1, 1), (1, 1)), ((2, 3), (2, 1), (1, 2)), ((3, 2), (3, 2), (2, 1))]:
        x = rng.normal(size=(2, 9, 8, 3))
        out_hw = tuple(
            K.output_size(n, k, s, d, "valid")[0] for n, k, s, d in zip(x.shape[1:3], kernel, strides, dilation)
        )
        cols = host(K.im2col(dev(x), kernel, strides, dilation, out_hw))
        c = rng.normal(size=cols.shape)
        back = host(K.col2im(dev(c), x.shape, kernel, strides, dilation, out_hw))
        # <im2col(x), c> == <x, col2im(c)> for every x and c
        np.testing.assert_allclose((cols * c).sum(), (x * back).sum(), rtol=1e-12)
        # the last patch entry is the last kernel tap of the last window
        last = [(o - 1) * s + (k - 1) * d for o, s, k, d in zip(out_hw, strides, kernel, dilation)]
        assert cols[0, 0] == x[0, 0, 0, 0] and cols[-1, -1] == x[-1, last[0], last[1], -1]


def test_frozen_batchnorm_runs_in_inference_mode():
    x = np.random.default_rng(2).normal(2.0, 3.0, size=(6, 3)).astype(np.float32)
    layer, _ = make("BatchNormalization", {"trainable": False}, (3,))
    y, _ = run(layer, x, training=True)  # as Keras: trainable=False uses (and keeps) the moving statistics
    np.testing.assert_allclose(y, x / np.sqrt(1 + 1e-3), rtol=1e-6)
    np.testing.assert_array_equal(host(layer.state["moving_mean"]), 0)


def test_conv_patch_buffer_reuse_keeps_pending_caches_intact():
    rng = np.random.default_rng(5)
    layer, out = make("Conv2D", {"filters": 3, "kernel_size": 3}, (6, 6, 2))
    xa, xb = rng.normal(size=(2, 2, 6, 6, 2)).astype(np.float32)
    g = rng.normal(size=(2, *out)).astype(np.float32)
    expected = []
    for x in (xa, xb):
        run(layer, x, g=g)
        expected.append(host(layer.grads["kernel"]).copy())
    xa, xb, g = dev(xa), dev(xb), dev(g)
    _, ca = layer.forward(xa)
    _, cb = layer.forward(xb)  # two pending caches, then backward in any order
    layer.backward(g, cb)
    np.testing.assert_array_equal(host(layer.grads["kernel"]), expected[1])
    layer.forward(xb)  # may take the buffer that backward(cb) released, never ca's
    layer.backward(g, ca)
    np.testing.assert_array_equal(host(layer.grads["kernel"]), expected[0])


def test_float32_stays_float32():
    rng = np.random.default_rng(0)
    for type_name, config, shape in [
        ("Conv2D", {"filters": 4, "kernel_size": 3, "padding": "same"}, (5, 5, 2)),
        ("Conv1D", {"filters": 4, "kernel_size": 3}, (6, 2)),
        ("MaxPooling2D", {"padding": "same"}, (5, 5, 2)),
        ("AveragePooling2D", {"padding": "same"}, (5, 5, 2)),
        ("GlobalAveragePooling2D", {}, (5, 5, 2)),
        ("BatchNormalization", {}, (5, 5, 2)),
        ("LayerNormalization", {}, (5, 2)),
        ("UpSampling2D", {}, (3, 3, 2)),
    ]:
        layer, out = make(type_name, config, shape)
        for training in (False, True):
            y, dx = run(layer, rng.normal(size=(2, *shape)), g=rng.normal(size=(2, *out)), training=training)
            assert y.dtype == np.float32 and dx.dtype == np.float32, type_name
            assert all(g.dtype == np.float32 for g in layer.grads.values()), type_name


@pytest.mark.parametrize(
    "type_name,config,shape,message",
    [
        (
            "Conv2D",
            {"filters": 2, "kernel_size": 3},
            (784,),
            r"Conv2D expects input of shape \(height, width, channels\), "
            r"found \(784,\)",
        ),
        ("Conv2D", {"filters": 2, "kernel_size": 5}, (3, 3, 1), "spans"),
        ("Conv2D", {"filters": 2, "kernel_size": 3, "dilation_rate": 3}, (6, 6, 1), "spans"),
        ("Conv2D", {"filters": 2, "kernel_size": [3, 3, 3]}, (6, 6, 1), "kernel_size"),
        ("Conv2D", {"filters": 2, "kernel_size": 3, "padding": "full"}, (6, 6, 1), "padding"),
        ("Conv1D", {"filters": 2, "kernel_size": 3}, (6, 6, 1), r"Conv1D expects input of shape \(steps, channels\)"),
        ("MaxPooling2D", {"pool_size": 4}, (3, 3, 1), "larger than the input"),
        ("GlobalAveragePooling1D", {}, (3, 3, 1), "expects input"),
        ("ZeroPadding2D", {"padding": [1, 2, 3]}, (3, 3, 1), "padding"),
        ("BatchNormalization", {"axis": 1}, (3, 3, 1), "last"),
    ],
)
def test_impossible_configs_raise_value_error(type_name, config, shape, message):
    with pytest.raises(ValueError, match=message):
        make(type_name, config, shape)


# -- PyTorch CPU references ------------------------------------------------------------------------
def _torch():
    torch = pytest.importorskip("torch")
    return torch, torch.nn.functional


def _nchw(torch, a):
    return torch.tensor(np.ascontiguousarray(np.moveaxis(a, -1, 1)), requires_grad=True)


def _nhwc(t):
    return np.moveaxis(t.detach().numpy(), 1, -1)


def _same_pads(size, k, stride, dilation):
    """Keras 'same' padding (before, after), written out independently of nnctl."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (k - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


CONV_CASES = [
    ({"filters": 5, "kernel_size": 3}, (9, 8, 3)),
    ({"filters": 4, "kernel_size": [3, 2], "strides": [2, 3]}, (11, 10, 2)),
    ({"filters": 4, "kernel_size": 3, "dilation_rate": [2, 3]}, (11, 12, 3)),
    ({"filters": 3, "kernel_size": 3, "padding": "same"}, (7, 6, 2)),
    ({"filters": 3, "kernel_size": 4, "padding": "same"}, (7, 6, 2)),
    ({"filters": 3, "kernel_size": [2, 5], "strides": 2, "padding": "same"}, (9, 8, 3)),
    ({"filters": 3, "kernel_size": 3, "strides": 2, "dilation_rate": 2, "padding": "same"}, (10, 9, 2)),
    ({"filters": 6, "kernel_size": 1}, (5, 5, 4)),
]


@pytest.mark.torch
@pytest.mark.parametrize("config,shape", CONV_CASES)
def test_conv2d_matches_torch(config, shape):
    torch, F = _torch()
    rng = np.random.default_rng(0)
    layer, out = make("Conv2D", config, shape)
    layer.params["bias"][...] = dev(rng.normal(size=layer.params["bias"].shape))
    x = rng.normal(size=(3, *shape)).astype(np.float32)
    g = rng.normal(size=(3, *out)).astype(np.float32)
    y, dx = run(layer, x, g=g)
    kh, kw = layer.params["kernel"].shape[:2]
    (sh, sw), (dh, dw) = layer._s, layer._d
    xt = _nchw(torch, x)
    wt = torch.tensor(np.ascontiguousarray(host(layer.params["kernel"]).transpose(3, 2, 0, 1)), requires_grad=True)
    bt = torch.tensor(host(layer.params["bias"]).copy(), requires_grad=True)
    xin = xt
    if config.get("padding") == "same":
        (t, b), (left, r) = _same_pads(shape[0], kh, sh, dh), _same_pads(shape[1], kw, sw, dw)
        xin = F.pad(xt, (left, r, t, b))
    yt = F.conv2d(xin, wt, bt, stride=(sh, sw), dilation=(dh, dw))
    (yt * torch.tensor(np.moveaxis(g, -1, 1))).sum().backward()
    np.testing.assert_allclose(y, _nhwc(yt), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dx, _nhwc(xt.grad), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(host(layer.grads["kernel"]), wt.grad.numpy().transpose(2, 3, 1, 0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(host(layer.grads["bias"]), bt.grad.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.torch
@pytest.mark.parametrize(
    "config",
    [
        {"filters": 4, "kernel_size": 3},
        {"filters": 4, "kernel_size": 4, "strides": 2, "padding": "same"},
        {"filters": 2, "kernel_size": 3, "dilation_rate": 2, "padding": "same"},
    ],
)
def test_conv1d_matches_torch(config):
    torch, F = _torch()
    rng = np.random.default_rng(1)
    layer, out = make("Conv1D", config, (13, 3))
    x = rng.normal(size=(2, 13, 3)).astype(np.float32)
    y, _ = run(layer, x)
    k = layer.params["kernel"].shape[0]
    xt = torch.tensor(np.ascontiguousarray(x.transpose(0, 2, 1)))
    if config.get("padding") == "same":
        xt = F.pad(xt, _same_pads(13, k, layer._s[1], layer._d[1]))
    yt = F.conv1d(
        xt,
        torch.tensor(np.ascontiguousarray(host(layer.params["kernel"]).transpose(2, 1, 0))),
        torch.tensor(host(layer.params["bias"])),
        stride=layer._s[1],
        dilation=layer._d[1],
    )
    np.testing.assert_allclose(y, yt.numpy().transpose(0, 2, 1), rtol=1e-4, atol=1e-5)


@pytest.mark.torch
@pytest.mark.parametrize(
    "type_name,config",
    [
        ("MaxPooling2D", {"pool_size": 2}),
        ("MaxPooling2D", {"pool_size": 3, "strides": 2}),
        ("MaxPooling2D", {"pool_size": [2, 3], "padding": "same"}),
        ("AveragePooling2D", {"pool_size": 2}),
        ("AveragePooling2D", {"pool_size": 3, "strides": 2, "padding": "same"}),
    ],
)
def test_pooling2d_matches_torch(type_name, config):
    torch, F = _torch()
    rng = np.random.default_rng(2)
    shape = (7, 9, 3)
    layer, out = make(type_name, config, shape)
    x = rng.normal(size=(2, *shape)).astype(np.float32)
    g = rng.normal(size=(2, *out)).astype(np.float32)
    y, dx = run(layer, x, g=g)
    (ph, pw), (sh, sw) = layer._p, layer._s
    xt = _nchw(torch, x)
    pads = (0, 0, 0, 0)
    if config.get("padding") == "same":
        (t, b), (left, r) = _same_pads(shape[0], ph, sh, 1), _same_pads(shape[1], pw, sw, 1)
        pads = (left, r, t, b)
    if type_name.startswith("Max"):
        yt = F.max_pool2d(F.pad(xt, pads, value=-np.inf), (ph, pw), (sh, sw))
    else:  # average over real pixels only: window sums divided by window counts of ones
        ones = torch.ones_like(xt[:1, :1])
        yt = F.avg_pool2d(F.pad(xt, pads), (ph, pw), (sh, sw)) / F.avg_pool2d(F.pad(ones, pads), (ph, pw), (sh, sw))
    (yt * torch.tensor(np.moveaxis(g, -1, 1))).sum().backward()
    np.testing.assert_allclose(y, _nhwc(yt), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx, _nhwc(xt.grad), rtol=1e-5, atol=1e-6)


@pytest.mark.torch
@pytest.mark.parametrize("shape", [(10, 4), (6, 5, 4), (4, 5, 6, 3)])
def test_batchnorm_matches_torch(shape):
    torch, F = _torch()
    rng = np.random.default_rng(3)
    layer, _ = make("BatchNormalization", {"momentum": 0.9}, shape[1:])
    layer.params["gamma"][...] = dev(rng.normal(size=shape[-1]))
    layer.params["beta"][...] = dev(rng.normal(size=shape[-1]))
    x = rng.normal(1.0, 2.0, size=shape).astype(np.float32)
    g = rng.normal(size=shape).astype(np.float32)
    c = shape[-1]
    xt = torch.tensor(np.ascontiguousarray(np.moveaxis(x, -1, 1)), requires_grad=True)
    gamma = torch.tensor(host(layer.params["gamma"]).copy(), requires_grad=True)
    beta = torch.tensor(host(layer.params["beta"]).copy(), requires_grad=True)
    rm, rv = torch.zeros(c), torch.ones(c)
    y, dx = run(layer, x, g=g, training=True)
    yt = F.batch_norm(xt, rm, rv, gamma, beta, training=True, momentum=0.1, eps=1e-3)  # torch momentum = 1 - ours
    (yt * torch.tensor(np.ascontiguousarray(np.moveaxis(g, -1, 1)))).sum().backward()
    np.testing.assert_allclose(y, np.moveaxis(yt.detach().numpy(), 1, -1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dx, np.moveaxis(xt.grad.numpy(), 1, -1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(host(layer.grads["gamma"]), gamma.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(host(layer.grads["beta"]), beta.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(host(layer.state["moving_mean"]), rm.numpy(), rtol=1e-5, atol=1e-6)
    n = x.size // c  # torch keeps the unbiased variance; Keras (and nnctl) the biased one
    np.testing.assert_allclose(host(layer.state["moving_variance"]), 0.9 + (rv.numpy() - 0.9) * (n - 1) / n, rtol=1e-5)
    # inference: torch with our moving statistics
    yi, _ = run(layer, x)
    yti = F.batch_norm(
        torch.tensor(np.ascontiguousarray(np.moveaxis(x, -1, 1))),
        torch.tensor(host(layer.state["moving_mean"])),
        torch.tensor(host(layer.state["moving_variance"])),
        gamma.detach(),
        beta.detach(),
        training=False,
        eps=1e-3,
    )
    np.testing.assert_allclose(yi, np.moveaxis(yti.numpy(), 1, -1), rtol=1e-4, atol=1e-4)


@pytest.mark.torch
def test_layernorm_matches_torch():
    torch, F = _torch()
    rng = np.random.default_rng(4)
    layer, _ = make("LayerNormalization", {}, (5, 8))
    layer.params["gamma"][...] = dev(rng.normal(size=8))
    layer.params["beta"][...] = dev(rng.normal(size=8))
    x = rng.normal(size=(3, 5, 8)).astype(np.float32)
    g = rng.normal(size=(3, 5, 8)).astype(np.float32)
    y, dx = run(layer, x, g=g)
    xt = torch.tensor(x, requires_grad=True)
    yt = F.layer_norm(
        xt, (8,), torch.tensor(host(layer.params["gamma"])), torch.tensor(host(layer.params["beta"])), eps=1e-3
    )
    (yt * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-4, atol=1e-4)
