"""The recurrent time loop (nnctl/layers/rnn_cells.py): the block-major gate layout and the coefficients a
training forward records give the same results as the whole-sequence path the PyTorch reference tests check.

References: the same layer run with ``training=False`` (whose backward derives its coefficients from the
tape after the loop, the path tests/test_seq_reference.py compares with PyTorch), and float64 central
differences (nnctl.testing.check_layer) through the training path.
"""

import numpy as np
import pytest

from helpers import dev, host, recurrent_layer
from nnctl.layers import layer_class, rnn_cells
from nnctl.testing import check_layer


def run_step(layer, xs, gs, training, mask=None):
    y, cache = layer.forward(*map(dev, xs), training=training, mask=mask)
    ins = layer.backward([dev(g) for g in gs] if len(gs) > 1 else dev(gs[0]), cache)
    ys = y if isinstance(y, list) else [y]
    return [host(v) for v in ys], [host(v) for v in ins], {k: host(v).copy() for k, v in layer.grads.items()}


CELLS = [
    ("LSTM", {}),
    ("LSTM", {"activation": "relu", "recurrent_activation": "hard_sigmoid"}),  # not fused
    ("GRU", {}),
    ("GRU", {"activation": "relu", "use_bias": False}),
    ("SimpleRNN", {}),
]


@pytest.mark.parametrize("type_name,config", CELLS)
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_training_forward_gives_the_inference_paths_gradients(type_name, config, masked, go_backwards):
    N, T, F, U = 9, 6, 3, 5
    n_states = 2 if type_name == "LSTM" else 1
    shapes = [(T, F)] + [(U,)] * n_states
    rng = np.random.default_rng(2)
    xs = [rng.normal(size=(N, *s)).astype(np.float32) for s in shapes]
    mask = None
    if masked:
        mask = np.ones((N, T), bool)
        mask[::3, -2:] = False
        mask[1::4, :2] = False
    cfg = dict(config, units=U, return_sequences=True, return_state=True, go_backwards=go_backwards)
    gs = [rng.normal(size=(N, T, U)).astype(np.float32)] + [rng.normal(size=(N, U)).astype(np.float32)] * n_states
    ref = run_step(recurrent_layer(type_name, shapes, **cfg), xs, gs, training=False, mask=mask)
    got = run_step(recurrent_layer(type_name, shapes, **cfg), xs, gs, training=True, mask=mask)
    for a, b in zip(got[0] + got[1], ref[0] + ref[1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for k in ref[2]:
        np.testing.assert_allclose(got[2][k], ref[2][k], rtol=1e-5, atol=1e-5, err_msg=k)


@pytest.mark.parametrize("type_name", ["LSTM", "GRU", "SimpleRNN"])
@pytest.mark.parametrize("masked", [False, True])
def test_training_path_passes_the_gradient_check(type_name, masked):
    n_states = 2 if type_name == "LSTM" else 1
    mask = None
    if masked:
        mask = np.ones((5, 4), bool)
        mask[::2, -1] = False
        mask[1, 0] = False
    layer = layer_class(type_name)(name="l", units=3, return_sequences=True, return_state=True)
    err = check_layer(layer, [(5, 4, 2)] + [(5, 3)] * n_states, training=True, mask=mask)
    assert err < 1e-5


def test_initial_state_gradients_are_not_pool_buffers():
    """dh0 comes out of the loop's alternating buffers: a later backward must not change it."""
    layer = recurrent_layer("LSTM", [(4, 3), (5,), (5,)], units=5, return_sequences=True)
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=s).astype(np.float32) for s in [(6, 4, 3), (6, 5), (6, 5)]]
    g = rng.normal(size=(6, 4, 5)).astype(np.float32)
    _, first, _ = run_step(layer, xs, [g], training=True)
    y, cache = layer.forward(*map(dev, xs), training=True)
    dh0 = layer.backward(dev(g), cache)[1]
    before = host(dh0).copy()
    del cache  # its buffers go back to the pool, and the next forward takes them
    run_step(layer, [x * 2 for x in xs], [g * 3], training=True)
    np.testing.assert_array_equal(host(dh0), before)
    np.testing.assert_array_equal(before, first[1])


def test_tape_slots_and_cells():
    tape = rnn_cells.Tape([])
    with pytest.raises(AttributeError):
        tape.unknown = 1  # typed slots: no name is added on the fly
    assert tape.E is None and tape.C is None
    assert isinstance(layer_class("SimpleRNN")(units=2).cell, rnn_cells.SimpleRNNCell)
    assert not isinstance(layer_class("LSTM")(units=2).cell, rnn_cells.SimpleRNNCell)
    with pytest.raises(NotImplementedError):
        rnn_cells.Cell(2).step(tape, 0)


@pytest.mark.parametrize("type_name", ["LSTM", "GRU", "SimpleRNN"])
def test_forward_products_in_row_pieces_per_block_equal_one_product(monkeypatch, type_name):
    """The forward's per-block products (N, U) @ (U, U) in ragged row pieces (8, 8, 3 rows)."""
    N, T, F, U = 19, 5, 3, 4
    rng = np.random.default_rng(5)
    xs = [rng.normal(size=(N, T, F)).astype(np.float32)]
    gs = [rng.normal(size=(N, T, U)).astype(np.float32)]
    results = []
    for part in (1 << 40, 8 * U * U):
        monkeypatch.setattr(rnn_cells, "_PART_MNK", part)
        monkeypatch.setattr(rnn_cells, "_MIN_PART_ROWS", 1)
        results.append(
            run_step(recurrent_layer(type_name, [(T, F)], units=U, return_sequences=True), xs, gs, training=True)
        )
    assert rnn_cells.row_parts(N, U * U) is not None  # the second run really used pieces
    (y, dx, grads), (y2, dx2, grads2) = results
    np.testing.assert_allclose(y2[0], y[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dx2[0], dx[0], rtol=1e-5, atol=1e-6)
    for k in grads:
        np.testing.assert_allclose(grads2[k], grads[k], rtol=1e-5, atol=1e-5, err_msg=k)
