"""The compiled recurrent steps (nnctl/kernels/rnn.py) against the xp path they replace, and on their own.

References: the same layer on the NumPy path (``kernels.kernels_off()``, the path tests/test_seq_reference.py
checks against PyTorch), float64 central differences through the kernel path (nnctl.testing.check_layer),
and NumPy's tanh for the float32 tanh the kernels compute.
"""

import subprocess
import sys

import numpy as np
import pytest

from helpers import dev, host, recurrent_layer
from nnctl import backend as B
from nnctl import kernels
from nnctl.layers import layer_class, rnn_cells
from nnctl.optimizers import Adam
from nnctl.testing import check_layer


@pytest.fixture(autouse=True)
def kernels_on():
    """Runs after conftest's device fixture: on the (emulated) GPU or with NNCTL_KERNELS=0 there is nothing
    to compare."""
    if not kernels.active():
        pytest.skip("compiled kernels are off (NNCTL_KERNELS=0 or the GPU backend)")
    kernels.load("rnn")  # loaded: inference forwards run the kernels too (rnn_cells.COLD_INFERENCE_WORK)


def tapes(cache):
    """The rnn_cells.Tape objects in a layer's cache (Bidirectional keeps two)."""
    if isinstance(cache, rnn_cells.Tape):
        return [cache]
    return [c for c in cache if isinstance(c, rnn_cells.Tape)]


def run_step(layer, xs, gs, training=True, mask=None):
    """Outputs, input gradients, parameter gradients, and whether every tape ran the compiled steps."""
    y, cache = layer.forward(*map(dev, xs), training=training, mask=mask)
    compiled = all(t.Rk is not None for t in tapes(cache))
    ins = layer.backward([dev(g) for g in gs] if len(gs) > 1 else dev(gs[0]), cache)
    ys = y if isinstance(y, list) else [y]
    grads = {k: host(v).copy() for k, v in layer.grads.items()}
    return [host(v) for v in ys], [host(v) for v in ins if v is not None], grads, compiled


def both_paths(type_name, shapes, xs, gs, training=True, mask=None, dtype=np.float32, **config):
    got = run_step(recurrent_layer(type_name, shapes, dtype=dtype, **config), xs, gs, training, mask)
    with kernels.kernels_off():
        ref = run_step(recurrent_layer(type_name, shapes, dtype=dtype, **config), xs, gs, training, mask)
    return got, ref


def assert_same(got, ref, rtol=2e-5, atol=2e-6):
    assert got[3] and not ref[3], "the kernel side must run the compiled steps, the reference side must not"
    assert len(got[0]) == len(ref[0]) and len(got[1]) == len(ref[1])
    for a, b in zip(got[0] + got[1], ref[0] + ref[1]):
        assert a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)
    for k in ref[2]:
        assert got[2][k].dtype == ref[2][k].dtype
        np.testing.assert_allclose(got[2][k], ref[2][k], rtol=rtol, atol=10 * atol, err_msg=k)


def ragged_mask(N, T, rng, side):
    """Random lengths 1..T padded on the right (post) or the left (pre), or scattered holes."""
    lengths = rng.integers(1, T + 1, size=N)
    steps = np.arange(T)
    if side == "right":
        return steps[None, :] < lengths[:, None]
    if side == "left":
        return steps[None, :] >= T - lengths[:, None]
    return rng.random((N, T)) > 0.3


N_STATES = {"LSTM": 2, "GRU": 1, "SimpleRNN": 1}


@pytest.mark.parametrize("type_name", ["LSTM", "GRU", "SimpleRNN"])
@pytest.mark.parametrize("mask_side", [None, "right", "left", "holes"])
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("N", [1, 7, 64])  # 64: the products run in row pieces (rnn_cells.row_parts)
def test_kernel_path_equals_xp_path(type_name, mask_side, go_backwards, N):
    rng = np.random.default_rng(N + 3 * go_backwards)
    T, F, U = 6, 5, 64 if N == 64 else 5
    k = N_STATES[type_name]
    shapes = [(T, F)] + [(U,)] * k
    xs = [rng.normal(size=(N, *s)).astype(np.float32) for s in shapes]
    mask = None if mask_side is None else ragged_mask(N, T, rng, mask_side)
    cfg = dict(units=U, return_sequences=True, return_state=True, go_backwards=go_backwards)
    gs = [rng.normal(size=(N, T, U)).astype(np.float32)] + [rng.normal(size=(N, U)).astype(np.float32)] * k
    got, ref = both_paths(type_name, shapes, xs, gs, mask=mask, **cfg)
    assert_same(got, ref)


@pytest.mark.parametrize(
    "type_name,config",
    [
        ("LSTM", {}),
        ("LSTM", {"use_bias": False, "unit_forget_bias": False}),
        ("GRU", {}),
        ("GRU", {"use_bias": False}),
        ("SimpleRNN", {}),
        ("LSTM", {"dropout": 0.4}),
    ],
)
@pytest.mark.parametrize("seq", [False, True])
@pytest.mark.parametrize("training", [False, True])
def test_kernel_path_last_state_and_inference(type_name, config, seq, training):
    """return_sequences on and off, no initial state, dropout (the same draws on both sides), and the
    backward after an inference forward."""
    N, T, F, U = 11, 7, 4, 6
    rng = np.random.default_rng(1)
    xs = [rng.normal(size=(N, T, F)).astype(np.float32)]
    gs = [rng.normal(size=(N, T, U) if seq else (N, U)).astype(np.float32)]
    got, ref = both_paths(type_name, [(T, F)], xs, gs, training, units=U, return_sequences=seq, **config)
    assert_same(got, ref)


@pytest.mark.parametrize("type_name", ["LSTM", "GRU", "SimpleRNN"])
@pytest.mark.parametrize("kernel_forward", [False, True])
def test_either_backward_follows_either_forward(type_name, kernel_forward):
    """The kernel forward records what the xp backward reads (A, TC, HR), and the kernel backward needs only
    what the xp forward records: a forward on one path and a backward on the other give the xp results."""
    N, T, F, U = 7, 5, 3, 4
    rng = np.random.default_rng(11)
    xs = [rng.normal(size=(N, T, F)).astype(np.float32)]
    gs = [rng.normal(size=(N, T, U)).astype(np.float32)]
    mask = ragged_mask(N, T, rng, "left")
    with kernels.kernels_off():
        ref = run_step(recurrent_layer(type_name, [(T, F)], units=U, return_sequences=True), xs, gs, mask=mask)
    layer = recurrent_layer(type_name, [(T, F)], units=U, return_sequences=True)
    previous = kernels.use_kernels(kernel_forward)
    try:
        y, cache = layer.forward(dev(xs[0]), training=True, mask=mask)
        assert (cache.Rk is not None) == kernel_forward
        kernels.use_kernels(not kernel_forward)
        dx = layer.backward(dev(gs[0]), cache)[0]
    finally:
        kernels.use_kernels(previous)
    np.testing.assert_allclose(host(y), ref[0][0], rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(host(dx), ref[1][0], rtol=2e-5, atol=2e-6)
    for k in ref[2]:
        np.testing.assert_allclose(host(layer.grads[k]), ref[2][k], rtol=2e-5, atol=2e-5, err_msg=k)


@pytest.mark.parametrize("inner", ["LSTM", "GRU"])
@pytest.mark.parametrize("merge_mode", ["concat", "sum"])
def test_bidirectional_runs_the_kernels(inner, merge_mode):
    N, T, F, U = 5, 6, 3, 4
    rng = np.random.default_rng(4)
    xs = [rng.normal(size=(N, T, F)).astype(np.float32)]
    width = 2 * U if merge_mode == "concat" else U
    gs = [rng.normal(size=(N, T, width)).astype(np.float32)]
    mask = ragged_mask(N, T, rng, "right")
    cfg = {"layer": {"type": inner, "units": U, "return_sequences": True}, "merge_mode": merge_mode}
    got, ref = both_paths("Bidirectional", [(T, F)], xs, gs, mask=mask, **cfg)
    assert_same(got, ref)


@pytest.mark.parametrize(
    "type_name,config",
    [
        ("LSTM", {"activation": "relu"}),
        ("LSTM", {"recurrent_activation": "hard_sigmoid"}),
        ("GRU", {"activation": "relu"}),
        ("SimpleRNN", {"activation": "relu"}),
    ],
)
def test_other_activations_run_the_xp_path(type_name, config):
    layer = recurrent_layer(type_name, [(4, 3)], units=3, **config)
    assert layer.cell.kernel is None
    x = np.random.default_rng(0).normal(size=(2, 4, 3)).astype(np.float32)
    _, cache = layer.forward(dev(x), training=True)
    assert cache.Rk is None


@pytest.mark.parametrize("type_name", ["LSTM", "GRU", "SimpleRNN"])
@pytest.mark.parametrize("masked", [False, True])
def test_kernel_path_passes_the_float64_gradient_check(type_name, masked):
    k = N_STATES[type_name]
    mask = None
    if masked:
        mask = np.ones((5, 4), bool)
        mask[::2, -1] = False
        mask[1, :2] = False
    layer = layer_class(type_name)(name="l", units=3, return_sequences=True, return_state=True)
    assert layer.cell.kernel is not None
    err = check_layer(layer, [(5, 4, 2)] + [(5, 3)] * k, training=True, mask=mask)
    assert err < 1e-5


@pytest.mark.parametrize("type_name", ["LSTM", "GRU", "SimpleRNN"])
def test_float64_kernel_path_equals_xp_path_to_rounding(type_name):
    """float64 uses libm's tanh: the two paths agree to rounding, as the pinned float64 references need."""
    N, T, F, U = 6, 5, 3, 4
    rng = np.random.default_rng(7)
    xs = [rng.normal(size=(N, T, F))]
    gs = [rng.normal(size=(N, T, U))]
    mask = ragged_mask(N, T, rng, "holes")
    got, ref = both_paths(type_name, [(T, F)], xs, gs, mask=mask, dtype=np.float64, units=U, return_sequences=True)
    assert got[0][0].dtype == np.float64
    assert_same(got, ref, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("type_name", ["LSTM", "GRU"])
def test_two_adam_steps_give_the_same_weights_with_and_without_kernels(type_name):
    """Two training steps on different batches (the tape's pooled buffers reused by the second): the
    weights after them agree, so nothing of the first batch leaks into the second on either path."""
    N, T, F, U = 8, 5, 3, 6
    rng = np.random.default_rng(9)
    batches = [(rng.normal(size=(N, T, F)).astype(np.float32), rng.normal(size=(N, T, U)).astype(np.float32))]
    batches.append((2 * batches[0][0][::-1].copy(), rng.normal(size=(N, T, U)).astype(np.float32)))
    mask = ragged_mask(N, T, rng, "right")

    def train(on):
        layer = recurrent_layer(type_name, [(T, F)], units=U, return_sequences=True)
        opts = {k: Adam(learning_rate=0.05) for k in layer.params}
        for k, v in layer.params.items():
            opts[k].init_slots(v.size, v.dtype)
        previous = kernels.use_kernels(on)
        try:
            for x, g in batches:
                y, cache = layer.forward(dev(x), training=True, mask=mask)
                assert all(t.Rk is not None for t in tapes(cache)) == on
                layer.backward(dev(g), cache)
                del cache
                for k, v in layer.params.items():
                    opts[k].step(v.reshape(-1), layer.grads[k].reshape(-1))
        finally:
            kernels.use_kernels(previous)
        return {k: host(v).copy() for k, v in layer.params.items()}

    got, ref = train(True), train(False)
    for k in ref:
        assert got[k].dtype == np.float32
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_float32_tanh_is_within_float32_rounding_of_numpy():
    from nnctl.kernels import rnn

    x = np.concatenate([np.linspace(-12, 12, 20001), [0.0, -0.0, 1e-30, 7.9, 7.91]]).astype(np.float32)
    Z = np.zeros((1, 1, 1, x.size), np.float32)
    Z[0, 0, 0] = x
    H = np.zeros((2, 1, x.size), np.float32)
    rnn.rnn_step(0, Z, np.zeros((1, x.size), np.float32), H, rnn_cells._NO_MASK)
    assert H.dtype == np.float32
    ref = np.tanh(x.astype(np.float64))
    np.testing.assert_allclose(H[1, 0], ref, rtol=3e-7, atol=2.5e-7)
    assert np.all(np.abs(H[1, 0]) <= 1)
    Z[0, 0, 0, :2] = np.nan, np.inf
    rnn.rnn_step(0, Z, np.zeros((1, x.size), np.float32), H, rnn_cells._NO_MASK)
    assert np.isnan(H[1, 0, 0]) and H[1, 0, 1] == 1


def test_switch_off_means_no_kernel():
    with kernels.kernels_off():
        assert not kernels.active()
        layer = recurrent_layer("LSTM", [(3, 2)], units=2)
        _, cache = layer.forward(dev(np.ones((1, 3, 2), np.float32)))
        assert cache.Rk is None
    assert B.xp is np


_COLD = """
import sys
import numpy as np
from nnctl.layers import layer_class, rnn_cells
from nnctl.testing import build_layer
layer = layer_class("LSTM")(name="l", units=4)
build_layer(layer, [(5, 3)], dtype=np.float32)
layer.init_grads()
x = np.ones((2, 5, 3), np.float32)
_, tape = layer.forward(x)
print(tape.Rk is None, "numba" in sys.modules)
rnn_cells.COLD_INFERENCE_WORK = 2 * tape.Z.size  # the next inference forward crosses it
_, tape = layer.forward(x)
print(tape.Rk is None, "numba" in sys.modules)
_, tape = layer.forward(x, training=True)
print(tape.Rk is None, "numba" in sys.modules)
"""


def test_a_short_inference_never_imports_numba():
    """A fresh process's first inference forwards stay on the xp path (no Numba start-up for a predict on a
    few rows); once the process has run enough inference, or loaded them, the kernels run."""
    out = subprocess.run([sys.executable, "-c", _COLD], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "False", "False", "True", "False", "True"]
