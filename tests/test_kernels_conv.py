"""The compiled convolution and pooling kernels (nnctl/kernels/conv.py, pool.py) against the NumPy path
(``kernels.kernels_off()``) on random shapes: ragged batches, strides, padding, dilation, channel counts,
pool windows that tile, leave gaps or overlap, ties in max pooling; float32 stays float32, float64
gradients through the kernels against finite differences, and two training steps with the layers'
reused buffers against fresh layers."""

import numpy as np
import pytest

from helpers import weights_after_steps
from nnctl import kernels
from nnctl.layers import conv as conv_mod
from nnctl.layers import layer_class
from nnctl.testing import build_layer, check_layer


@pytest.fixture(autouse=True)
def _compiled_kernels_on(device_from_environment):
    """Checked per test, after conftest's device fixture (a module mark is read at collection, still on NumPy):
    on the (emulated) GPU, with NNCTL_KERNELS=0 or without Numba there is nothing to compare."""
    if not kernels.active():
        pytest.skip("compiled kernels are off (NNCTL_KERNELS=0, no Numba or the GPU backend)")


CONV_CASES = [
    # (type, config, sample shape, batch)
    ("Conv2D", {"filters": 8, "kernel_size": 3}, (9, 8, 1), 1),
    ("Conv2D", {"filters": 5, "kernel_size": 3, "padding": "same"}, (7, 6, 3), 7),
    ("Conv2D", {"filters": 4, "kernel_size": [3, 2], "strides": 2}, (9, 8, 8), 7),
    ("Conv2D", {"filters": 6, "kernel_size": 3, "strides": [2, 1], "padding": "same"}, (8, 7, 3), 2),
    ("Conv2D", {"filters": 3, "kernel_size": 3, "dilation_rate": 2}, (9, 9, 8), 3),
    (
        "Conv2D",
        {"filters": 4, "kernel_size": 2, "dilation_rate": [1, 2], "padding": "same", "use_bias": False},
        (6, 7, 1),
        2,
    ),
    ("Conv1D", {"filters": 4, "kernel_size": 3, "padding": "same"}, (10, 3), 7),
    ("Conv1D", {"filters": 5, "kernel_size": 2, "strides": 2, "dilation_rate": 1}, (9, 8), 1),
    ("Conv2D", {"filters": 4, "kernel_size": 1}, (5, 6, 3), 7),  # 1x1: the input is the patch matrix
    ("Conv2D", {"filters": 3, "kernel_size": 1, "strides": 2, "padding": "same"}, (5, 6, 8), 2),
]

POOL_CASES = [
    ("MaxPooling2D", {"pool_size": 2}, (6, 8, 3), 7),  # tiles the input
    ("MaxPooling2D", {"pool_size": 2}, (7, 5, 8), 1),  # a row and a column left out
    ("MaxPooling2D", {"pool_size": 3, "strides": 2}, (7, 9, 2), 3),  # overlapping windows
    ("MaxPooling2D", {"pool_size": 2, "strides": 3}, (8, 8, 1), 2),  # gaps between windows
    ("MaxPooling2D", {"pool_size": [2, 3], "padding": "same"}, (5, 7, 3), 7),  # -inf padding
    ("MaxPooling2D", {"pool_size": [3, 2], "strides": 1, "padding": "same"}, (4, 4, 1), 2),
    ("MaxPooling1D", {"pool_size": 2}, (9, 3), 7),
    ("MaxPooling1D", {"pool_size": 3, "strides": 1, "padding": "same"}, (6, 8), 1),
]


@pytest.fixture(params=[0, 64], ids=["im2col", "direct-backward"])
def direct_width(request, monkeypatch):
    """Every kernel route of a convolution: im2col/col2im kernels + products, or the direct kernels'
    backward after an im2col forward."""
    monkeypatch.setattr(conv_mod, "_DIRECT_MAX_WIDTH", request.param)
    return request.param


def make(type_name, config, shape, dtype, need_dx=True):
    layer = layer_class(type_name)(name="k", **config)
    build_layer(layer, [shape], dtype=dtype, input_grads_needed=(need_dx,))
    for k in list(layer.params):
        layer.params[k] = layer.params[k].astype(dtype)
    layer.init_grads()
    return layer


def run(layer, x, g_seed=1):
    """(y, dx, {param: grad}) of one training forward and backward with a fixed random output gradient."""
    y, cache = layer.forward(x, training=True)
    g = np.random.default_rng(g_seed).standard_normal(y.shape).astype(y.dtype)
    (dx,) = layer.backward(g, cache)
    return y, dx, {k: v.copy() for k, v in layer.grads.items()}


def both(layer, x):
    with kernels.kernels_off():
        ref = run(layer, x)
    return ref, run(layer, x)


def close(a, b, dtype):
    """Equal within the rounding of sums in another order: a few ulps of the largest magnitude."""
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(a, b, rtol=0, atol=64 * eps * max(1.0, float(np.abs(b).max())))


@pytest.mark.parametrize("type_name,config,shape,n", CONV_CASES)
@pytest.mark.parametrize("need_dx", [True, False])
def test_conv_kernels_equal_the_numpy_path(type_name, config, shape, n, need_dx, direct_width):
    layer = make(type_name, config, shape, np.float32, need_dx)
    x = np.random.default_rng(0).standard_normal((n, *shape)).astype(np.float32)
    (y0, dx0, g0), (y1, dx1, g1) = both(layer, x)
    assert y1.dtype == np.float32 and y1.shape == y0.shape
    close(y1, y0, np.float32)
    if need_dx:
        assert dx1.dtype == np.float32 and dx1.shape == x.shape
        close(dx1, dx0, np.float32)
    else:
        assert dx0 is None and dx1 is None
    for k in g0:
        assert g1[k].dtype == np.float32
        close(g1[k], g0[k], np.float32)


def test_im2col_and_col2im_kernels_are_the_numpy_path_bit_for_bit():
    """The kernels copy and add in the NumPy path's order: the same bits (the emulated-GPU suite relies on it)."""
    layer = make("Conv2D", {"filters": 16, "kernel_size": 3}, (10, 9, 8), np.float32)
    x = np.random.default_rng(3).standard_normal((5, 10, 9, 8)).astype(np.float32)
    (y0, dx0, g0), (y1, dx1, g1) = both(layer, x)
    np.testing.assert_array_equal(y1, y0)
    np.testing.assert_array_equal(dx1, dx0)
    for k in g0:
        np.testing.assert_array_equal(g1[k], g0[k])


@pytest.mark.parametrize("type_name,config,shape,n", CONV_CASES[:6:2])
def test_conv_kernels_float64_gradients_match_finite_differences(type_name, config, shape, n, direct_width):
    check_layer(layer_class(type_name)(name="k", **config), [(n, *shape)], training=True)


@pytest.mark.parametrize("type_name,config,shape,n", POOL_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool_kernels_equal_the_numpy_path_with_ties(type_name, config, shape, n, dtype):
    layer = make(type_name, config, shape, dtype)
    rng = np.random.default_rng(0)
    # ReLU-like inputs: many tied zeros, and ties among a few small integers, so the first-maximum rule decides
    x = np.maximum(rng.integers(-3, 3, size=(n, *shape)), 0).astype(dtype)
    (y0, dx0, _), (y1, dx1, _) = both(layer, x)
    assert y1.dtype == dtype and dx1.dtype == dtype
    np.testing.assert_array_equal(y1, y0)
    np.testing.assert_array_equal(dx1, dx0)
    # inference forward, then backward (finds the index again from the input)
    with kernels.kernels_off():
        y0, c0 = layer.forward(x, training=False)
        d0 = layer.backward(np.ones_like(y0), c0)[0]
    y1, c1 = layer.forward(x, training=False)
    np.testing.assert_array_equal(y1, y0)
    np.testing.assert_array_equal(layer.backward(np.ones_like(y1), c1)[0], d0)


def test_max_pool_kernel_propagates_nan_as_numpy_maximum():
    layer = make("MaxPooling2D", {"pool_size": 2}, (4, 4, 2), np.float32)
    x = np.random.default_rng(0).standard_normal((2, 4, 4, 2)).astype(np.float32)
    x[0, 1, 1, 0] = x[1, 2, 3, 1] = np.nan
    (y0, dx0, _), (y1, dx1, _) = both(layer, x)
    np.testing.assert_array_equal(y1, y0)  # NaNs in the same places
    np.testing.assert_array_equal(dx1, dx0)


@pytest.mark.parametrize("type_name,config,shape,n", POOL_CASES[::3])
def test_max_pool_kernel_float64_gradients_match_finite_differences(type_name, config, shape, n):
    check_layer(layer_class(type_name)(name="k", **config), [(n, *shape)], training=True)


def test_reused_buffers_do_not_leak_between_batches(direct_width):
    """Two training steps of a CNN with the layers' kept buffers equal the same steps on fresh layers."""
    entries = [
        {"type": "Conv2D", "filters": 8, "kernel_size": 3, "activation": "relu"},
        {"type": "MaxPooling2D", "pool_size": 2},
        {"type": "Conv2D", "filters": 4, "kernel_size": 3, "padding": "same", "activation": "relu"},
        {"type": "Flatten"},
        {"type": "Dense", "units": 3, "activation": "softmax"},
    ]
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((6, 12, 12, 1)).astype(np.float32) for _ in range(2)]
    ys = [rng.integers(0, 3, size=6) for _ in range(2)]

    def drop_buffers(net):  # every kept buffer dropped: the next forward allocates new ones
        for node in net.nodes:
            if hasattr(node.layer, "_scratch"):
                node.layer._scratch = None

    kept = weights_after_steps(entries, xs, ys)
    np.testing.assert_array_equal(kept, weights_after_steps(entries, xs, ys, before_step=drop_buffers))


def _cnn(entries, shape=(12, 12, 1), classes=3, batch=6):
    from nnctl import losses, optimizers
    from nnctl.build import build_model
    from nnctl.spec import validate
    from nnctl.train import Trainer

    raw = {
        "name": "t",
        "seed": 0,
        "data": {"train": "synthetic"},
        "model": {"layers": [dict(e) for e in entries]},
        "train": {"loss": "sparse_categorical_crossentropy", "optimizer": "adam", "batch_size": batch},
    }
    spec = validate(raw, source="test")
    net = build_model(spec, shape, spec.seed)
    net.to_device()
    loss = losses.get("sparse_categorical_crossentropy")
    return net, Trainer(net, loss, optimizers.get("adam", learning_rate=1e-2), spec.train, "sparse", classes, spec.seed)


FUSABLE = [
    {"type": "Conv2D", "filters": 8, "kernel_size": 3, "activation": "relu"},  # narrow patch: direct backward
    {"type": "MaxPooling2D", "pool_size": 2},
    {"type": "Conv2D", "filters": 4, "kernel_size": 3, "padding": "same", "activation": "relu"},
    {"type": "Flatten"},
    {"type": "Dense", "units": 3, "activation": "softmax"},
]


def test_the_fusion_pass_moves_a_conv_relu_into_the_conv_only_where_the_conv_output_has_no_other_reader():
    net, _ = _cnn(FUSABLE)
    assert sorted(net.nodes[i].name for i in net._relu_fused) == ["conv2d", "conv2d_1"]
    assert net.by_name["conv2d/linear"].layer.relu_fused
    shared = [
        {"type": "Conv2D", "filters": 4, "kernel_size": 3, "name": "c"},
        {"type": "Activation", "activation": "relu", "name": "r"},
        {"type": "Add", "inputs": ["c", "r"]},  # c's output has a second reader: the ReLU stays a node
        {"type": "Flatten"},
        {"type": "Dense", "units": 3, "activation": "softmax"},
    ]
    net, _ = _cnn(shared)
    assert net._relu_fused == set() and not net.by_name["c"].layer.relu_fused


@pytest.mark.parametrize("kernels_on", [True, False], ids=["kernels", "numpy"])
def test_fused_relu_training_equals_the_relu_node(kernels_on, monkeypatch):
    """Loss, gradients and two steps' weights with the ReLU in the convolution equal those with the
    ReLU node run on its own (the same mask, y > 0 against x > 0), on both paths, over ragged batches."""
    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((n, 12, 12, 1)).astype(np.float32), rng.integers(0, 3, size=n)) for n in (6, 1, 7)]

    def train(fused: bool):
        net, trainer = _cnn(FUSABLE)
        if not fused:
            for i in net._relu_fused:
                net.by_name[net.nodes[i].refs[0][0]].layer.relu_fused = False
            net._relu_fused = set()
        previous = kernels.use_kernels(kernels_on)
        try:
            out = []
            for xb, yb in batches:
                value, pred = trainer.loss_and_grad(xb, yb)
                out += [np.asarray(value), np.asarray(pred), net.flat_grads.copy()]
                trainer.optimizer.step(net.flat_params, net.flat_grads, net.slices.values(), lr=1e-2)
            return out, net.flat_params.copy()
        finally:
            kernels.use_kernels(previous)

    (steps_f, w_f), (steps_u, w_u) = train(True), train(False)
    for a, b in zip(steps_f, steps_u):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(w_f, w_u)


def test_a_small_inference_never_imports_numba():
    """A one-row CNN predict stays on the xp code (Numba's import costs about a second); training imports it."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from nnctl.layers import layer_class\n"
        "from nnctl.testing import build_layer\n"
        "conv = layer_class('Conv2D')(name='c', filters=4, kernel_size=3)\n"
        "pool = layer_class('MaxPooling2D')(name='p', pool_size=2)\n"
        "build_layer(conv, [(8, 8, 3)], dtype=np.float32); build_layer(pool, [(6, 6, 4)], dtype=np.float32)\n"
        "x = np.ones((1, 8, 8, 3), np.float32)\n"
        "pool.forward(conv.forward(x)[0])\n"
        "print('INFERENCE', 'numba' in sys.modules)\n"
        "pool.forward(conv.forward(x, training=True)[0], training=True)\n"
        "print('TRAINING', 'numba' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "INFERENCE False" in out and "TRAINING True" in out
