"""FLOPs against hand-computed counts (a multiply-add = 2 FLOPs, a bias add 1 per output element)."""

import importlib
import pathlib

import numpy as np
import pytest

from helpers import layers_spec
from nnctl.build import build_model
from nnctl.flops import layer_flops, model_flops
from nnctl.layers import LAYERS, layer_class
from nnctl.testing import build_layer

HERE = pathlib.Path(__file__).resolve().parent


def model(layers, input_shape):
    return build_model(
        layers_spec([dict(e, name=e.get("name", f"l{i}")) for i, e in enumerate(layers)], "float64"), input_shape, 0
    )


def test_dense_with_and_without_bias_and_activation():
    m = model(
        [{"type": "Dense", "units": 16, "activation": "relu"}, {"type": "Dense", "units": 3, "use_bias": False}], (4,)
    )
    per, total = model_flops(m)
    # 4 -> 16: 64 multiply-adds (128) + 16 bias adds + 16 relu; 16 -> 3: 48 multiply-adds, no bias
    assert per == {"l0": 2 * 4 * 16 + 16 + 16, "l1": 2 * 16 * 3}
    assert total == 160 + 96


def test_dense_on_a_sequence_counts_every_step():
    m = model([{"type": "Dense", "units": 5}], (7, 3))
    assert model_flops(m)[1] == 7 * (2 * 3 * 5 + 5)


def test_conv2d_same_and_strided():
    # 8x8x3 input, 3x3 kernel, 4 filters, same padding: 64 positions x 4 filters x 27 multiply-adds
    m = model(
        [
            {"type": "Conv2D", "filters": 4, "kernel_size": 3, "padding": "same"},
            {"type": "Conv2D", "filters": 2, "kernel_size": 2, "strides": 2, "use_bias": False},
        ],
        (8, 8, 3),
    )
    per, _ = model_flops(m)
    assert per["l0"] == 2 * 8 * 8 * 4 * (3 * 3 * 3) + 8 * 8 * 4
    # 8x8x4 -> 4x4x2 with a 2x2 kernel: 16 positions x 2 filters x 16 multiply-adds
    assert per["l1"] == 2 * 4 * 4 * 2 * (2 * 2 * 4)


def test_conv3d_and_its_pooling():
    # 4x4x4x2 input, 2x2x2 kernel, 3 filters, valid: 27 positions x 3 filters x 16 multiply-adds, 81 bias adds
    m = model(
        [
            {"type": "Conv3D", "filters": 3, "kernel_size": 2, "name": "c"},
            {"type": "ZeroPadding3D", "padding": 1, "name": "z"},
            {"type": "MaxPooling3D", "pool_size": 2, "name": "p"},
        ],
        (4, 4, 4, 2),
    )
    per, _ = model_flops(m)
    assert per["c"] == 2 * 27 * 3 * (2 * 2 * 2 * 2) + 27 * 3
    assert per["z"] == 0
    assert per["p"] == (2 * 2 * 2 * 3) * 8  # 5x5x5x3 -> 2x2x2x3 outputs, 8 reads each


def test_lstm_and_gru():
    # LSTM, T=5, F=3, U=4: per step x W (3x16) and h R (4x16) products, 16 bias adds
    m = model([{"type": "LSTM", "units": 4}], (5, 3))
    assert model_flops(m)[1] == 5 * (2 * 3 * 16 + 2 * 4 * 16 + 16)
    # GRU (Keras's reset_after: two bias rows), T=6, F=2, U=3: 3 gate blocks
    m = model([{"type": "GRU", "units": 3, "return_sequences": True}], (6, 2))
    assert model_flops(m)[1] == 6 * (2 * 2 * 9 + 2 * 3 * 9 + 2 * 9)


def test_multi_head_attention_self():
    # Tq = Tk = 6, D = 8, 2 heads of key_dim 4: q, k, v projections 6 x 8 x 8 multiply-adds each with 48 bias
    # adds; scores and weighted sum 2 heads x 6 x 6 x 4 each; output 6 x 8 x 8 with 8 x 6 bias adds
    m = model([{"type": "MultiHeadAttention", "num_heads": 2, "key_dim": 4, "inputs": ["input", "input"]}], (6, 8))
    proj = 3 * (2 * 6 * 8 * 8 + 6 * 8)
    attn = 2 * (2 * 6 * 6 * 4) * 2
    out = 2 * 6 * 8 * 8 + 6 * 8
    assert model_flops(m)[1] == proj + attn + out


def test_dot_attention_cross():
    # query (5, 4) from a Dense, value = key = the input (5, 4): scores 5 x 5 x 4, weighted sum 5 x 5 x 4
    m = model(
        [{"type": "Dense", "units": 4, "name": "q"}, {"type": "Attention", "inputs": ["q", "input"], "name": "att"}],
        (5, 4),
    )
    assert model_flops(m)[0]["att"] == 2 * 5 * 5 * 4 + 2 * 5 * 5 * 4


def test_time_distributed_and_bidirectional():
    m = model(
        [
            {"type": "TimeDistributed", "layer": {"type": "Dense", "units": 3}, "name": "td"},
            {"type": "Bidirectional", "layer": {"type": "SimpleRNN", "units": 2}, "name": "bi"},
        ],
        (4, 5),
    )
    per, _ = model_flops(m)
    assert per["td"] == 4 * (2 * 5 * 3 + 3)
    assert per["bi"] == 2 * 4 * (2 * 3 * 2 + 2 * 2 * 2 + 2)  # two directions, concat merge is free


def test_pooling_merge_norm_and_zero_cost_layers():
    m = model(
        [
            {"type": "Conv2D", "filters": 2, "kernel_size": 1, "name": "c"},
            {"type": "MaxPooling2D", "pool_size": 2, "name": "p"},
            {"type": "BatchNormalization", "name": "bn"},
            {"type": "Add", "inputs": ["bn", "p"], "name": "add"},
            {"type": "Flatten", "name": "f"},
            {"type": "Dropout", "rate": 0.5, "name": "d"},
        ],
        (4, 4, 3),
    )
    per, _ = model_flops(m)
    assert per["p"] == 2 * 2 * 2 * 4  # 8 outputs, 4 reads each
    assert per["bn"] == 2 * 8 and per["add"] == 8 and per["f"] == 0 and per["d"] == 0


def _examples():
    out = {}
    for path in sorted(HERE.glob("layer_examples_*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        out.update(mod.EXAMPLES)
    return out


@pytest.mark.parametrize("type_name", LAYERS.names())
def test_every_registered_layer_has_a_count(type_name):
    config, shapes, _ = _examples()[type_name][0]
    layer = layer_class(type_name)(name="x", **config)
    in_shapes = [tuple(s[1:]) for s in shapes]
    out = build_layer(layer, in_shapes, np.float64, np.random.default_rng(0))
    f = layer_flops(layer, in_shapes, out)
    assert f is not None and f >= 0, f"{type_name} has no FLOPs rule in nnctl/flops.py"
