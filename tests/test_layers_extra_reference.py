"""The layers of issue 17 against PyTorch CPU (forward, input and parameter gradients, float64) and
hand-computed cases. Our layouts are NHWC with Keras's kernels; torch's are NCHW with its own."""

import numpy as np
import pytest

from helpers import dev, host
from nnctl.layers import layer_class
from nnctl.testing import build_layer


def make(type_name, config, in_shapes, seed=0):
    """A float64 layer built for ``in_shapes`` (no batch axis), parameters on the device, with gradients."""
    layer = layer_class(type_name)(name="l", **config)
    out = build_layer(layer, in_shapes, np.float64, np.random.default_rng(seed), np.random.default_rng(seed))
    rng = np.random.default_rng(seed + 7)  # non-trivial biases, gammas and betas
    layer.params = {k: dev(v if "kernel" in k else v + rng.normal(size=v.shape)) for k, v in layer.params.items()}
    layer.state = {k: dev(v) for k, v in layer.state.items()}
    layer.init_grads()
    return layer, out


def run(layer, xs, g=None, **kw):
    """forward (and backward of ``g``) from host arrays; host output and input gradients."""
    y, cache = layer.forward(*[dev(x) for x in xs], **kw)
    dxs = layer.backward(dev(g), cache) if g is not None else None
    return host(y), None if dxs is None else [host(d) for d in dxs]


def _torch():
    torch = pytest.importorskip("torch")
    return torch, torch.nn.functional


def _t(torch, a, channels_first=True):
    """A float64 leaf tensor from an NHWC/NTC array (channels moved to axis 1 unless told otherwise)."""
    a = np.moveaxis(a, -1, 1) if channels_first else a
    return torch.tensor(np.ascontiguousarray(a), dtype=torch.float64, requires_grad=True)


def _back(t, channels_first=True):
    a = t.detach().numpy()
    return np.moveaxis(a, 1, -1) if channels_first else a


def _same_pads(size, k, stride, dilation):
    """Keras 'same' padding (before, after), written out independently of nnctl."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (k - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-11)


# -- depthwise and separable convolutions ------------------------------------------------------------
DEPTHWISE_CASES = [
    ({"kernel_size": 3}, (7, 6, 3)),
    ({"kernel_size": [3, 2], "depth_multiplier": 2, "strides": [2, 1]}, (9, 8, 2)),
    ({"kernel_size": 3, "strides": 2, "padding": "same", "depth_multiplier": 3}, (7, 8, 2)),
    ({"kernel_size": 4, "padding": "same", "dilation_rate": 2}, (9, 7, 3)),
]


def _torch_depthwise(torch, F, xt, w, stride, dilation, pads):
    """torch grouped convolution: our (KH, KW, C, M) kernel as (C*M, 1, KH, KW), output channel c*M + m."""
    kh, kw, c, m = w.shape
    wt = torch.tensor(np.ascontiguousarray(w.transpose(2, 3, 0, 1).reshape(c * m, 1, kh, kw)), requires_grad=True)
    (t, b), (left, r) = pads
    return F.conv2d(F.pad(xt, (left, r, t, b)), wt, stride=stride, dilation=dilation, groups=c), wt


def _pads_of(config, shape, k, s, d):
    if config.get("padding") == "same":
        return _same_pads(shape[0], k[0], s[0], d[0]), _same_pads(shape[1], k[1], s[1], d[1])
    return (0, 0), (0, 0)


@pytest.mark.torch
@pytest.mark.parametrize("separable", [False, True])
@pytest.mark.parametrize("config,shape", DEPTHWISE_CASES)
def test_depthwise_and_separable_conv2d_match_torch(config, shape, separable):
    torch, F = _torch()
    rng = np.random.default_rng(0)
    config = dict(config, filters=4) if separable else config
    layer, out = make("SeparableConv2D" if separable else "DepthwiseConv2D", config, [shape])
    x = rng.normal(size=(2, *shape))
    g = rng.normal(size=(2, *out))
    y, (dx,) = run(layer, [x], g)
    dw = host(layer.params["depthwise_kernel"])
    k, s, d = dw.shape[:2], layer._s, layer._d
    xt = _t(torch, x)
    yt, wt = _torch_depthwise(torch, F, xt, dw, s, d, _pads_of(config, shape, k, s, d))
    if separable:  # pointwise (1, 1, C*M, F) as a 1x1 convolution (F, C*M, 1, 1)
        pw = host(layer.params["pointwise_kernel"])
        pt = torch.tensor(np.ascontiguousarray(pw[0, 0].T[:, :, None, None]), requires_grad=True)
        yt = F.conv2d(yt, pt)
    bt = torch.tensor(host(layer.params["bias"]), requires_grad=True)
    yt = yt + bt[None, :, None, None]
    (yt * _t(torch, g).detach()).sum().backward()
    close(y, _back(yt))
    close(dx, _back(xt.grad))
    kh, kw, c, m = dw.shape
    close(host(layer.grads["depthwise_kernel"]), wt.grad.numpy().reshape(c, m, kh, kw).transpose(2, 3, 0, 1))
    close(host(layer.grads["bias"]), bt.grad.numpy())
    if separable:
        close(host(layer.grads["pointwise_kernel"])[0, 0], pt.grad.numpy()[:, :, 0, 0].T)


@pytest.mark.torch
@pytest.mark.parametrize("separable", [False, True])
def test_depthwise_and_separable_conv1d_match_torch(separable):
    torch, F = _torch()
    rng = np.random.default_rng(1)
    config = {"kernel_size": 3, "strides": 2, "padding": "same", "depth_multiplier": 2}
    if separable:
        config["filters"] = 3
    layer, out = make("SeparableConv1D" if separable else "DepthwiseConv1D", config, [(11, 2)])
    x, g = rng.normal(size=(2, 11, 2)), rng.normal(size=(2, *out))
    y, (dx,) = run(layer, [x], g)
    dw = host(layer.params["depthwise_kernel"])  # (K, C, M)
    xt = _t(torch, x)
    wt = torch.tensor(np.ascontiguousarray(dw.transpose(1, 2, 0).reshape(4, 1, 3)), requires_grad=True)
    yt = F.conv1d(F.pad(xt, _same_pads(11, 3, 2, 1)), wt, stride=2, groups=2)
    if separable:
        pt = torch.tensor(
            np.ascontiguousarray(host(layer.params["pointwise_kernel"])[0].T[:, :, None]), requires_grad=True
        )
        yt = F.conv1d(yt, pt)
    yt = yt + torch.tensor(host(layer.params["bias"]))[None, :, None]
    (yt * _t(torch, g).detach()).sum().backward()
    close(y, _back(yt))
    close(dx, _back(xt.grad))
    close(host(layer.grads["depthwise_kernel"]), wt.grad.numpy().reshape(2, 2, 3).transpose(2, 0, 1))


def test_depthwise_by_hand():
    # one channel, multiplier 2: kernels [[1, 0], [0, 0]] (picks the top-left) and all-ones (window sums)
    layer, out = make("DepthwiseConv2D", {"kernel_size": 2, "depth_multiplier": 2, "use_bias": False}, [(3, 3, 1)])
    w = np.zeros((2, 2, 1, 2))
    w[0, 0, 0, 0] = 1
    w[:, :, 0, 1] = 1
    layer.params["depthwise_kernel"][...] = dev(w)
    x = np.arange(1, 10, dtype=np.float64).reshape(1, 3, 3, 1)
    y, _ = run(layer, [x])
    assert out == (2, 2, 2)
    np.testing.assert_array_equal(y[0, :, :, 0], [[1, 2], [4, 5]])
    np.testing.assert_array_equal(y[0, :, :, 1], [[12, 16], [24, 28]])
    assert layer_class("SeparableConv2D")(filters=8, kernel_size=3).get_config()["depth_multiplier"] == 1


# -- transposed convolutions -------------------------------------------------------------------------
def _keras_length(n, k, s, d, padding, output_padding):
    """keras.utils deconv_output_length, written out from its documentation."""
    k = k + (k - 1) * (d - 1)
    if output_padding is None:
        return n * s + max(k - s, 0) if padding == "valid" else n * s
    pad = k // 2 if padding == "same" else 0
    return (n - 1) * s + k - 2 * pad + output_padding


TRANSPOSE_CASES = [
    ({"filters": 3, "kernel_size": 3}, (4, 5, 2)),
    ({"filters": 2, "kernel_size": 3, "strides": 2}, (4, 3, 3)),
    ({"filters": 2, "kernel_size": 3, "strides": 2, "padding": "same"}, (4, 3, 2)),
    ({"filters": 2, "kernel_size": 4, "strides": 2, "padding": "same"}, (3, 4, 2)),
    ({"filters": 2, "kernel_size": [2, 5], "strides": [3, 2], "padding": "same"}, (3, 4, 2)),
    ({"filters": 2, "kernel_size": 1, "strides": 3}, (3, 3, 2)),
    ({"filters": 2, "kernel_size": 3, "strides": 2, "output_padding": 1}, (3, 4, 2)),
    ({"filters": 2, "kernel_size": 3, "strides": [2, 3], "padding": "same", "output_padding": [1, 2]}, (3, 4, 2)),
    ({"filters": 2, "kernel_size": 3, "dilation_rate": 2, "padding": "same"}, (5, 4, 2)),
]


@pytest.mark.torch
@pytest.mark.parametrize("config,shape", TRANSPOSE_CASES)
def test_conv2d_transpose_matches_torch(config, shape):
    """torch's conv_transpose2d gives the full (uncropped) result; the output is TensorFlow's window of it:
    the adjoint of a convolution over the Keras output size with TensorFlow's padding rule."""
    torch, F = _torch()
    rng = np.random.default_rng(2)
    layer, out = make("Conv2DTranspose", config, [shape])
    k, s, d = layer.params["kernel"].shape[:2], layer._s, layer._d
    op = config.get("output_padding")
    op = (op, op) if isinstance(op, int) else op
    mode = config.get("padding", "valid")
    want = [_keras_length(shape[a], k[a], s[a], d[a], mode, None if op is None else op[a]) for a in (0, 1)]
    assert out == (*want, config["filters"])
    x, g = rng.normal(size=(2, *shape)), rng.normal(size=(2, *out))
    y, (dx,) = run(layer, [x], g)
    xt = _t(torch, x)
    wt = torch.tensor(np.ascontiguousarray(host(layer.params["kernel"]).transpose(3, 2, 0, 1)), requires_grad=True)
    bt = torch.tensor(host(layer.params["bias"]), requires_grad=True)
    full = F.conv_transpose2d(xt, wt, bt, stride=s, dilation=d)
    for axis, _n in ((2, shape[0]), (3, shape[1])):
        a = axis - 2
        size = full.shape[axis]
        before = max(size - want[a], 0) // 2 if mode == "same" else 0  # TF: conv 'same' padding on the output
        extra = max(before + want[a] - size, 0)  # output_padding past the full result: zeros (+ bias)
        pad = [0, 0, 0, 0]
        pad[(3 - axis) * 2 + 1] = extra
        full = F.pad(full - bt[None, :, None, None], pad) + bt[None, :, None, None]
        full = full.narrow(axis, before, want[a])
    (full * _t(torch, g).detach()).sum().backward()
    close(y, _back(full))
    close(dx, _back(xt.grad))
    close(host(layer.grads["kernel"]), wt.grad.numpy().transpose(2, 3, 1, 0))
    close(host(layer.grads["bias"]), bt.grad.numpy())


@pytest.mark.torch
def test_conv2d_transpose_is_the_input_gradient_of_conv2d():
    """TensorFlow's definition: conv2d_transpose(x) = d<conv2d(z), x>/dz for z of the output shape."""
    torch, F = _torch()
    rng = np.random.default_rng(3)
    for cfg in (
        {"strides": 2, "padding": "same", "kernel_size": 3},
        {"strides": 2, "kernel_size": 4},
        {"strides": 2, "padding": "same", "kernel_size": 4},
    ):
        layer, out = make("Conv2DTranspose", dict(cfg, filters=3, use_bias=False), [(4, 5, 2)])
        x = rng.normal(size=(2, 4, 5, 2))
        y, _ = run(layer, [x])
        kk = cfg["kernel_size"]
        z = torch.zeros((2, 3, out[0], out[1]), dtype=torch.float64, requires_grad=True)
        pads = (_same_pads(out[0], kk, 2, 1), _same_pads(out[1], kk, 2, 1)) if cfg.get("padding") else ((0, 0),) * 2
        wt = torch.tensor(np.ascontiguousarray(host(layer.params["kernel"]).transpose(3, 2, 0, 1)))
        conv = F.conv2d(F.pad(z, (*pads[1], *pads[0])), wt, stride=2)
        assert conv.shape[2:] == (4, 5)
        (grad,) = torch.autograd.grad(conv, z, grad_outputs=_t(torch, x).detach())
        close(y, _back(grad))


def test_conv_transpose_keras_shapes():
    # shapes from Keras's formula for a 7x7 input, 3x3 kernel: 'valid' s=1 -> 9, s=2 -> 15, 'same' s=2 -> 14
    for cfg, want in [
        ({}, (9, 9, 4)),
        ({"strides": 2}, (15, 15, 4)),
        ({"strides": 2, "padding": "same"}, (14, 14, 4)),
        ({"strides": 2, "output_padding": 1}, (16, 16, 4)),
        ({"strides": 2, "padding": "same", "output_padding": 0}, (13, 13, 4)),
    ]:
        assert make("Conv2DTranspose", dict(cfg, filters=4, kernel_size=3), [(7, 7, 2)])[1] == want
    layer, out = make("Conv1DTranspose", {"filters": 1, "kernel_size": 2, "strides": 2, "use_bias": False}, [(3, 1)])
    layer.params["kernel"][...] = dev(np.array([1.0, 10.0]).reshape(2, 1, 1))
    y, _ = run(layer, [np.array([1.0, 2.0, 3.0]).reshape(1, 3, 1)])
    np.testing.assert_array_equal(y[0, :, 0], [1, 10, 2, 20, 3, 30])  # each step spreads over its own pair
    with pytest.raises(ValueError, match="output_padding"):
        make("Conv2DTranspose", {"filters": 1, "kernel_size": 3, "strides": 2, "output_padding": 2}, [(4, 4, 1)])


# -- shape layers against NumPy ------------------------------------------------------------------------
def test_shape_layers_match_numpy():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 5, 6, 3))
    y, (dx,) = run(make("Cropping2D", {"cropping": [[1, 2], [0, 3]]}, [(5, 6, 3)])[0], [x], np.ones((2, 2, 3, 3)))
    np.testing.assert_array_equal(y, x[:, 1:3, 0:3])
    np.testing.assert_array_equal(dx, np.pad(np.ones((2, 2, 3, 3)), ((0, 0), (1, 2), (0, 3), (0, 0))))
    s = rng.normal(size=(2, 4, 3))
    y, _ = run(make("ZeroPadding1D", {"padding": [1, 2]}, [(4, 3)])[0], [s])
    np.testing.assert_array_equal(y, np.pad(s, ((0, 0), (1, 2), (0, 0))))
    y, (dx,) = run(make("UpSampling1D", {"size": 3}, [(4, 3)])[0], [s], np.arange(2 * 12 * 3.0).reshape(2, 12, 3))
    np.testing.assert_array_equal(y, np.repeat(s, 3, axis=1))
    np.testing.assert_array_equal(dx, np.arange(2 * 12 * 3.0).reshape(2, 4, 3, 3).sum(axis=2))
    y, (dx,) = run(make("Permute", {"dims": [3, 1, 2]}, [(5, 6, 3)])[0], [x], np.ones((2, 3, 5, 6)))
    np.testing.assert_array_equal(y, x.transpose(0, 3, 1, 2))
    assert dx.shape == x.shape
    y, (dx,) = run(make("RepeatVector", {"n": 4}, [(3,)])[0], [s[:, 0]], np.ones((2, 4, 3)))
    np.testing.assert_array_equal(y, np.stack([s[:, 0]] * 4, axis=1))
    np.testing.assert_array_equal(dx, np.full((2, 3), 4.0))
    with pytest.raises(ValueError, match="permutation"):
        make("Permute", {"dims": [1, 1]}, [(3, 4)])
    with pytest.raises(ValueError, match="removes every row"):
        make("Cropping2D", {"cropping": [2, 0]}, [(4, 4, 1)])


def test_masking_marks_padded_steps_and_an_lstm_skips_them():
    """A sequence with trailing all-zero steps behind Masking gives the LSTM output of the unpadded sequence."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 5, 3))
    x[0, 3:] = 0.0  # sample 0: 3 real steps
    x[1, 1, :] = [0.0, 1.0, 0.0]  # a step with some zero features is real
    masking, _ = make("Masking", {}, [(5, 3)])
    y, (dx,) = run(masking, [x], np.ones_like(x))
    mask = host(masking.compute_mask(None, [dev(x)]))
    np.testing.assert_array_equal(mask, [[True, True, True, False, False], [True] * 5])
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(dx[:, :, 0], mask.astype(float))
    lstm, _ = make("LSTM", {"units": 4}, [(5, 3)])
    h_masked, _ = run(lstm, [y], mask=dev(mask))
    short, _ = make("LSTM", {"units": 4}, [(3, 3)])
    short.params = lstm.params
    h_short, _ = run(short, [x[:1, :3]])
    close(h_masked[0], h_short[0])
    y, _ = run(make("Masking", {"mask_value": 1.5}, [(2, 2)])[0], [np.array([[[1.5, 1.5], [1.5, 2.0]]])])
    np.testing.assert_array_equal(y, [[[0, 0], [1.5, 2.0]]])


# -- merge layers --------------------------------------------------------------------------------------
def test_elementwise_merges_by_hand():
    a, b, c = np.array([[1.0, 5.0, 2.0]]), np.array([[3.0, 5.0, -1.0]]), np.array([[2.0, 0.0, 4.0]])
    g = np.array([[1.0, 2.0, 3.0]])
    y, (da, db, dc) = run(make("Multiply", {}, [(3,)] * 3)[0], [a, b, c], g)
    np.testing.assert_array_equal(y, a * b * c)
    np.testing.assert_array_equal(da, g * b * c)
    y, (da, db) = run(make("Subtract", {}, [(3,)] * 2)[0], [a, b], g)
    np.testing.assert_array_equal(y, a - b)
    np.testing.assert_array_equal(db, -g)
    y, grads = run(make("Average", {}, [(3,)] * 3)[0], [a, b, c], g)
    close(y, (a + b + c) / 3)
    y, (da, db, dc) = run(make("Maximum", {}, [(3,)] * 3)[0], [a, b, c], g)
    np.testing.assert_array_equal(y, [[3, 5, 4]])
    np.testing.assert_array_equal(np.concatenate([da, db, dc]), [[0, 2, 0], [1, 0, 0], [0, 0, 3]])  # tie: first
    y, (da, db) = run(make("Minimum", {}, [(3,)] * 2)[0], [a, b], g)
    np.testing.assert_array_equal(y, [[1, 5, -1]])
    np.testing.assert_array_equal(np.concatenate([da, db]), [[1, 2, 0], [0, 0, 3]])
    with pytest.raises(ValueError, match="exactly 2"):
        make("Subtract", {}, [(3,)] * 3)
    with pytest.raises(ValueError, match="one shape"):
        make("Multiply", {}, [(3,), (4,)])


@pytest.mark.torch
@pytest.mark.parametrize(
    "axes,shapes,normalize",
    [
        (1, [(4,), (4,)], False),
        (1, [(4,), (4,)], True),
        ([2, 2], [(3, 4), (5, 4)], False),
        ([2, 2], [(3, 4), (5, 4)], True),
        ([1, 2], [(4, 3), (5, 4)], False),
        ([-1, 1], [(3, 4), (4, 2)], True),
    ],
)
def test_dot_matches_torch(axes, shapes, normalize):
    torch, F = _torch()
    rng = np.random.default_rng(6)
    layer, out = make("Dot", {"axes": axes, "normalize": normalize}, shapes)
    a, b = (rng.normal(size=(3, *s)) for s in shapes)
    g = rng.normal(size=(3, *out))
    y, (da, db) = run(layer, [a, b], g)
    at, bt = _t(torch, a, False), _t(torch, b, False)
    ax = [axes] * 2 if isinstance(axes, int) else axes
    ua = F.normalize(at, dim=ax[0], eps=1e-6) if normalize else at
    ub = F.normalize(bt, dim=ax[1], eps=1e-6) if normalize else bt
    yt = torch.tensordot  # batched: one tensordot per sample
    yt = torch.stack(
        [yt(ua[i], ub[i], dims=([ax[0] % len(a.shape) - 1], [ax[1] % len(b.shape) - 1])) for i in range(3)]
    )
    yt = yt.reshape(3, -1) if yt.dim() == 1 else yt
    (yt * torch.tensor(g)).sum().backward()
    assert yt.shape[1:] == out
    close(y, yt.detach().numpy())
    close(da, at.grad.numpy())
    close(db, bt.grad.numpy())


# -- group normalisation -------------------------------------------------------------------------------
@pytest.mark.torch
@pytest.mark.parametrize(
    "config,shape",
    [
        ({"groups": 2}, (5, 6, 4)),
        ({"groups": 3}, (4, 5, 6)),
        ({"groups": 1, "epsilon": 1e-5}, (7, 4)),
        ({"groups": 4}, (3, 3, 4)),
        ({"groups": 2, "center": False, "scale": False}, (6, 4)),
    ],
)
def test_group_normalization_matches_torch(config, shape):
    torch, F = _torch()
    rng = np.random.default_rng(7)
    layer, _ = make("GroupNormalization", config, [shape])
    x, g = rng.normal(1.0, 2.0, size=(3, *shape)), rng.normal(size=(3, *shape))
    y, (dx,) = run(layer, [x], g)
    xt = _t(torch, x)
    gamma = torch.tensor(host(layer.params["gamma"]), requires_grad=True) if "gamma" in layer.params else None
    beta = torch.tensor(host(layer.params["beta"]), requires_grad=True) if "beta" in layer.params else None
    yt = F.group_norm(xt, config["groups"], gamma, beta, eps=config.get("epsilon", 1e-3))
    (yt * _t(torch, g).detach()).sum().backward()
    close(y, _back(yt))
    close(dx, _back(xt.grad))
    if gamma is not None:
        close(host(layer.grads["gamma"]), gamma.grad.numpy())
        close(host(layer.grads["beta"]), beta.grad.numpy())
    with pytest.raises(ValueError, match="divides"):
        make("GroupNormalization", {"groups": 4}, [(3, 6)])
    assert layer_class("GroupNormalization")().get_config()["groups"] == 32  # Keras's default


# -- noise ---------------------------------------------------------------------------------------------
def test_noise_layers_differ_between_training_and_inference():
    x = np.ones((400, 6, 50))
    for type_name, config in [
        ("SpatialDropout1D", {"rate": 0.3}),
        ("GaussianNoise", {"stddev": 0.5}),
        ("GaussianDropout", {"rate": 0.2}),
    ]:
        layer, _ = make(type_name, config, [(6, 50)])
        y, _ = run(layer, [x])
        np.testing.assert_array_equal(y, x)  # inference: identity
        y, (dx,) = run(layer, [x], np.ones_like(x), training=True)
        assert not np.array_equal(y, x), type_name
        if type_name == "SpatialDropout1D":
            assert (y == y[:, :1]).all()  # one draw per sample and channel, shared over the steps
            kept = y[:, 0] != 0
            assert abs(kept.mean() - 0.7) < 0.02 and np.allclose(y[:, 0][kept], 1 / 0.7)
            np.testing.assert_array_equal(dx, y)  # dx = m / (1 - rate) for an upstream gradient of ones
        elif type_name == "GaussianNoise":
            assert abs((y - 1).mean()) < 0.01 and abs((y - 1).std() - 0.5) < 0.01
            np.testing.assert_array_equal(dx, 1)
        else:
            assert abs(y.mean() - 1) < 0.01 and abs(y.std() - np.sqrt(0.2 / 0.8)) < 0.01
            np.testing.assert_array_equal(dx, y)
    layer, _ = make("SpatialDropout2D", {"rate": 0.5}, [(3, 4, 20)])
    y, _ = run(layer, [np.ones((50, 3, 4, 20))], training=True)
    assert (y == y[:, :1, :1]).all() and set(np.unique(y)) == {0.0, 2.0}
    with pytest.raises(ValueError, match="rate"):
        make("GaussianDropout", {"rate": 1.0}, [(3,)])


# -- TimeDistributed -----------------------------------------------------------------------------------
def test_time_distributed_applies_the_inner_layer_at_every_step():
    rng = np.random.default_rng(8)
    td, out = make(
        "TimeDistributed",
        {"layer": {"type": "Conv2D", "filters": 2, "kernel_size": 2, "activation": "relu"}},
        [(3, 4, 4, 1)],
    )
    assert out == (3, 3, 3, 2) and set(td.params) == {"kernel", "bias"}
    conv, _ = make("Conv2D", {"filters": 2, "kernel_size": 2}, [(4, 4, 1)])
    conv.params = {k: v.copy() for k, v in td.params.items()}
    x = rng.normal(size=(2, 3, 4, 4, 1))
    y, _ = run(td, [x])
    for t in range(3):
        yt, _ = run(conv, [x[:, t]])
        close(y[:, t], np.maximum(yt, 0))
    cfg = td.get_config()
    assert cfg["layer"]["type"] == "Conv2D" and cfg["layer"]["filters"] == 2
    with pytest.raises(ValueError, match="layer spec"):
        layer_class("TimeDistributed")(layer={"type": "Nope"})


# -- Luong and Bahdanau attention ----------------------------------------------------------------------
@pytest.mark.torch
@pytest.mark.parametrize("type_name", ["Attention", "AdditiveAttention"])
@pytest.mark.parametrize(
    "config,with_key,masked",
    [
        ({}, False, False),
        ({"use_scale": True}, True, True),
        ({"use_causal_mask": True}, False, True),
        ({"use_scale": False}, True, False),
    ],
)
def test_attention_matches_torch(type_name, config, with_key, masked):
    """Keras's definitions written in torch: scores, -1e9 on padded or future keys, softmax, average, zeroed
    padded queries."""
    torch, F = _torch()
    rng = np.random.default_rng(9)
    tq = tv = 5
    shapes = [(tq, 3), (tv, 2), (tv, 3)] if with_key else [(tq, 3), (tv, 3)]
    layer, out = make(type_name, config, shapes)
    xs = [rng.normal(size=(2, *s)) for s in shapes]
    g = rng.normal(size=(2, *out))
    qmask = np.array([[True] * 5, [True, True, True, False, False]])
    vmask = np.array([[True, True, False, True, False], [True] * 5])
    masks = [qmask, vmask] + ([None] if with_key else []) if masked else None
    y, cache = layer.forward(*[dev(x) for x in xs], mask=None if masks is None else [dev(m) for m in masks])
    dxs = host(layer.backward(dev(g), cache))
    ts = [_t(torch, x, False) for x in xs]
    q, v = ts[0], ts[1]
    k = ts[2] if with_key else v
    scale = torch.tensor(host(layer.params["scale"]), requires_grad=True) if "scale" in layer.params else None
    if type_name == "Attention":
        s = q @ k.transpose(1, 2) * (scale if scale is not None else 1)
    else:
        s = ((scale if scale is not None else 1) * torch.tanh(q[:, :, None] + k[:, None])).sum(-1)
    allowed = torch.ones(2, tq, tv, dtype=torch.bool)
    if masked:
        allowed &= torch.tensor(vmask)[:, None, :]
    if config.get("use_causal_mask"):
        allowed &= torch.tril(torch.ones(tq, tv, dtype=torch.bool))
    s = s - 1e9 * (~allowed).double()
    yt = torch.softmax(s, -1) @ v
    if masked:
        yt = yt * torch.tensor(qmask)[:, :, None].double()
    (yt * torch.tensor(g)).sum().backward()
    close(host(y), yt.detach().numpy())
    for d, t in zip(dxs, ts):
        close(d, t.grad.numpy())
    if scale is not None:
        close(host(layer.grads["scale"]), scale.grad.numpy())
    if masked:
        assert host(layer.compute_mask([dev(m) for m in masks], xs)).tolist() == qmask.tolist()


def test_attention_weights_layouts_and_defaults():
    assert make("Attention", {}, [(4, 3), (5, 3)])[0].params == {}  # Keras: no weights unless use_scale
    layer, out = make("AdditiveAttention", {}, [(4, 3), (5, 2), (5, 3)])
    assert out == (4, 2) and layer.params["scale"].shape == (3,)  # Keras: use_scale=True, scale (dim,)
    # Keras's scalar scale, stored with shape (1,) (every nnctl parameter has at least one axis)
    assert make("Attention", {"use_scale": True}, [(4, 3), (5, 3)])[0].params["scale"].shape == (1,)
    with pytest.raises(ValueError, match="score_mode"):
        layer_class("Attention")(score_mode="concat")
    with pytest.raises(ValueError, match="features"):
        make("Attention", {}, [(4, 3), (5, 2)])
