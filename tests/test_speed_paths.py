"""The CPU fast paths of issue 22 give the plain path's results: convolutions in chunks of samples, recurrent
products in row pieces, reused buffers; and choosing the CPU leaves the process's malloc settings alone.

References: a float64 numerical gradient (nnctl.testing.check_layer) through the fast path, and the same layer
run as one chunk / one product (the path that the PyTorch reference tests check).
"""

import numpy as np
import pytest
from typer.testing import CliRunner

from helpers import SPECS
from nnctl import backend as B
from nnctl.cli.main import app
from nnctl.layers import conv as conv_mod
from nnctl.layers import layer_class, rnn_cells
from nnctl.testing import build_layer, check_layer


def built(type_name, config, in_shape, seed=0, dtype=np.float32):
    layer = layer_class(type_name)(name="l", **config)
    build_layer(layer, [in_shape], dtype, np.random.default_rng(seed), np.random.default_rng(seed))
    layer.params = {k: B.asarray(v.astype(dtype)) for k, v in layer.params.items()}
    layer.init_grads()
    return layer


def step(layer, x, g, **kw):
    """forward in training and backward: (y, dx, {param: grad copy})."""
    y, cache = layer.forward(B.asarray(x), training=True, **kw)
    dx = layer.backward(B.asarray(g), cache)[0]
    return B.to_numpy(y), B.to_numpy(dx), {k: B.to_numpy(v).copy() for k, v in layer.grads.items()}


CONVS = [
    ("Conv2D", {"filters": 5, "kernel_size": 3}, (7, 6, 3)),
    ("Conv2D", {"filters": 4, "kernel_size": [3, 2], "strides": 2, "padding": "same"}, (7, 8, 2)),
    ("Conv2D", {"filters": 3, "kernel_size": 2, "dilation_rate": 2, "padding": "same", "use_bias": False}, (6, 6, 2)),
    ("Conv2D", {"filters": 3, "kernel_size": 1, "strides": 2}, (5, 5, 4)),
    ("Conv1D", {"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same"}, (9, 3)),
]


@pytest.mark.parametrize("type_name,config,in_shape", CONVS)
def test_conv_in_chunks_equals_one_chunk(monkeypatch, type_name, config, in_shape):
    rng = np.random.default_rng(3)
    n = 5  # chunks of one and two samples: ragged at the end
    x = rng.standard_normal((n, *in_shape)).astype(np.float32)
    results = []
    for budget in (1 << 40, 1, None):
        layer = built(type_name, config, in_shape)
        per_sample = layer._out[0] * layer._out[1] * layer._k[0] * layer._k[1] * in_shape[-1] * 4
        monkeypatch.setattr(conv_mod, "_TRAINING_CHUNK_BYTES", budget if budget is not None else 2 * per_sample)
        y0, _ = layer.forward(B.asarray(x))
        g = np.random.default_rng(4).standard_normal(y0.shape).astype(np.float32)
        results.append(step(layer, x, g))
    (y, dx, grads), *others = results
    assert y.dtype == dx.dtype == np.float32
    for y2, dx2, grads2 in others:
        np.testing.assert_allclose(y2, y, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(dx2, dx, rtol=1e-5, atol=1e-5)
        for k in grads:
            assert grads2[k].dtype == np.float32
            np.testing.assert_allclose(grads2[k], grads[k], rtol=1e-5, atol=1e-4, err_msg=k)


@pytest.mark.parametrize("type_name,config,in_shape", CONVS[:3])
def test_conv_in_chunks_passes_the_gradient_check(monkeypatch, type_name, config, in_shape):
    monkeypatch.setattr(conv_mod, "_TRAINING_CHUNK_BYTES", 1)  # one sample per chunk
    layer = layer_class(type_name)(name="l", **config)
    assert check_layer(layer, [(3, *in_shape)], training=True) < 1e-5


def test_conv_buffers_reused_across_steps_leak_nothing(monkeypatch):
    """Two steps on different batches with the layer's buffers kept, and with fresh ones: the same results."""
    monkeypatch.setattr(conv_mod, "_TRAINING_CHUNK_BYTES", 1 << 12)
    rng = np.random.default_rng(5)
    xs = [rng.standard_normal((4, 8, 8, 3)).astype(np.float32) for _ in range(2)]
    gs = [rng.standard_normal((4, 6, 6, 6)).astype(np.float32) for _ in range(2)]
    kept = built("Conv2D", {"filters": 6, "kernel_size": 3}, (8, 8, 3))
    fresh = built("Conv2D", {"filters": 6, "kernel_size": 3}, (8, 8, 3))
    for x, g in zip(xs, gs):
        fresh._scratch = None
        a, b = step(kept, x, g), step(fresh, x, g)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        for k in a[2]:
            np.testing.assert_array_equal(a[2][k], b[2][k])


RNNS = [
    ("LSTM", {"units": 6}),
    ("GRU", {"units": 6}),
    ("SimpleRNN", {"units": 6}),
    ("LSTM", {"units": 5, "return_sequences": True, "activation": "relu"}),
]


@pytest.mark.parametrize("type_name,config", RNNS)
@pytest.mark.parametrize("masked", [False, True])
def test_recurrent_products_in_row_pieces_equal_one_product(monkeypatch, type_name, config, masked):
    n, t, f = 19, 5, 3  # pieces of 8 rows (8, 8, 3): ragged at the end
    rng = np.random.default_rng(6)
    x = rng.standard_normal((n, t, f)).astype(np.float32)
    mask = None
    if masked:
        mask = np.ones((n, t), bool)
        mask[::3, -2:] = False
    results = []
    for part in (1 << 40, None):
        layer = built(type_name, config, (t, f))
        weights = layer.params["recurrent_kernel"].size
        monkeypatch.setattr(rnn_cells, "_PART_MNK", part if part is not None else 8 * weights)
        y0, _ = layer.forward(B.asarray(x), mask=mask)
        g = np.random.default_rng(7).standard_normal(y0.shape).astype(np.float32)
        results.append(step(layer, x, g, mask=mask))
    assert rnn_cells.row_parts(n, weights) is not None  # the second run really used pieces
    (y, dx, grads), (y2, dx2, grads2) = results
    np.testing.assert_allclose(y2, y, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dx2, dx, rtol=1e-5, atol=1e-6)
    for k in grads:
        np.testing.assert_allclose(grads2[k], grads[k], rtol=1e-5, atol=1e-5, err_msg=k)


def test_recurrent_row_pieces_pass_the_gradient_check(monkeypatch):
    monkeypatch.setattr(rnn_cells, "_PART_MNK", 8 * 4 * 4 * 4)  # LSTM(4): pieces of 8 rows
    monkeypatch.setattr(rnn_cells, "_MIN_PART_ROWS", 1)
    layer = layer_class("LSTM")(name="l", units=4, return_sequences=True)
    assert check_layer(layer, [(11, 3, 2)], training=True) < 1e-5


def test_row_parts_keep_large_products_whole():
    assert rnn_cells.row_parts(64, 64 * 256) == [slice(0, 32), slice(32, 64)]  # LSTM(64) at batch 64
    assert rnn_cells.row_parts(16, 64 * 256) is None  # already small
    assert rnn_cells.row_parts(64, 512 * 2048) is None  # large enough for OpenBLAS's threads


def test_choosing_the_cpu_leaves_malloc_alone(monkeypatch):
    called = []
    monkeypatch.setattr(B, "keep_freed_memory", lambda: called.append(1) or True)
    assert B.use("cpu") == "cpu"
    assert called == []


def test_the_train_verb_asks_for_it(monkeypatch, tmp_path):
    called = []
    monkeypatch.setattr(B, "keep_freed_memory", lambda: called.append(1) or True)
    r = CliRunner().invoke(
        app,
        ["train", str(SPECS / "xor.toml"), "--device", "cpu", "--epochs", "1", "--quiet", "-o", str(tmp_path / "x.h5")],
    )
    assert r.exit_code == 0, r.output
    assert called == [1]
