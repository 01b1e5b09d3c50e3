"""Forward-pass FLOPs of one sample, per node and in total, from a built model's layers and shapes.

Convention (that of the Keras/TF profilers): a multiply-add of a matrix product or convolution counts 2
FLOPs, a bias add 1 per output element. Dense: 2 * in * units + units per position. A convolution:
2 * prod(kernel) * output positions (+ bias). A recurrent layer: T * (2 * (F + U) * G * U + bias), G the gate
blocks (SimpleRNN 1, GRU 3, LSTM 4). MultiHeadAttention: its four projections plus 2 * H * Tq * Tk * (key_dim +
value_dim) for the scores and the weighted sum. Elementwise layers and activations count 1 per output
element (a merge of n inputs n - 1), normalisation 2 (scale and shift), pooling 1 per window element read;
nonlinearities inside recurrent and attention layers (gates, softmax) and pure data movement (reshape,
padding, embedding lookup, dropout at inference) count 0. Backward costs about twice the forward.
"""

from __future__ import annotations

import math

import numpy as np

CONVENTION = "forward pass of one sample; a multiply-add counts 2, as in the Keras/TF profilers"


def _n(shape) -> int:
    return int(np.prod(shape)) if shape is not None else 0


def _size(layer, name: str) -> int:
    p = layer.params.get(name)
    return int(p.size) if p is not None else 0


def _positions(shape) -> int:
    """Output positions of a channels-last shape: every axis but the last."""
    return _n(tuple(shape)[:-1])


def _dense_like(layer, ins, out) -> int:
    """Dense, Conv*, DepthwiseConv*: each output position takes one dot product per kernel column."""
    return 2 * _positions(out) * _size(layer, "kernel") + _bias(layer, out)


def _bias(layer, out) -> int:
    return _n(out) if "bias" in layer.params else 0


def _separable(layer, ins, out) -> int:
    return 2 * _positions(out) * (_size(layer, "depthwise_kernel") + _size(layer, "pointwise_kernel")) + _bias(
        layer, out
    )


def _depthwise(layer, ins, out) -> int:
    return 2 * _positions(out) * _size(layer, "depthwise_kernel") + _bias(layer, out)


def _transpose(layer, ins, out) -> int:
    """A transposed convolution scatters every input position through the whole kernel."""
    return 2 * _positions(ins[0]) * _size(layer, "kernel") + _bias(layer, out)


def _recurrent(layer, ins, out) -> int:
    steps = int(ins[0][0])
    per_step = 2 * (_size(layer, "kernel") + _size(layer, "recurrent_kernel")) + _size(layer, "bias")
    return steps * per_step


def _mha(layer, ins, out) -> int:
    q = tuple(ins[0])
    v = tuple(ins[1]) if len(ins) > 1 else q
    k = tuple(ins[2]) if len(ins) > 2 else v
    total = 0
    for name, steps in (("query", q[0]), ("key", k[0]), ("value", v[0])):
        total += 2 * steps * _size(layer, f"{name}_kernel") + steps * _size(layer, f"{name}_bias")
    h, kd = layer.num_heads, layer.key_dim
    vd = layer.value_dim or kd
    total += 2 * h * q[0] * k[0] * (kd + vd)  # scores q k^T and the weighted sum of values
    total += 2 * q[0] * _size(layer, "output_kernel") + q[0] * _size(layer, "output_bias")
    return total


def _score_attention(layer, ins, out) -> int:
    q, v = tuple(ins[0]), tuple(ins[1])
    k = tuple(ins[2]) if len(ins) > 2 else v
    pairs = q[0] * k[0]
    additive = type(layer).__name__ == "AdditiveAttention"
    scores = pairs * q[1] * (3 if additive else 2)  # additive: q + k, times the scale, summed; dot: a multiply-add
    return scores + 2 * pairs * v[1]


def _dot(layer, ins, out) -> int:
    """Dot contracts one axis of each input: output elements times the contracted length, 2 per multiply-add."""
    contracted = math.isqrt(max(1, _n(ins[0]) * _n(ins[1]) // max(1, _n(out))))
    return 2 * _n(out) * contracted


def _elementwise(layer, ins, out) -> int:
    return _n(out)


def _merge(layer, ins, out) -> int:
    extra = 1 if type(layer).__name__ == "Average" else 0
    return (len(ins) - 1 + extra) * _n(out)


def _norm(layer, ins, out) -> int:
    return 2 * _n(out)


def _pool(layer, ins, out) -> int:
    return _n(out) * _n(getattr(layer, "_p", (1,)))


def _global_pool(layer, ins, out) -> int:
    return _n(ins[0])


def _time_distributed(layer, ins, out) -> int | None:
    inner = layer.inner
    steps = int(ins[0][0])
    act = _n(inner.output_shape) if layer._act is not None else 0
    f = layer_flops(inner, inner.input_shapes, inner.output_shape)
    return None if f is None else steps * (f + act)


def _bidirectional(layer, ins, out) -> int | None:
    each = [layer_flops(sub, sub.input_shapes, sub.output_shape) for _, sub in layer._subs]
    if any(f is None for f in each):
        return None
    first = out[0] if isinstance(out, list) else out
    return sum(f for f in each if f is not None) + (0 if layer.merge_mode in (None, "concat") else _n(first))


_ZERO = (
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "GaussianNoise",
    "GaussianDropout",
    "Flatten",
    "Reshape",
    "Permute",
    "RepeatVector",
    "Cropping1D",
    "Cropping2D",
    "ZeroPadding1D",
    "ZeroPadding2D",
    "UpSampling1D",
    "UpSampling2D",
    "UpSampling3D",
    "ZeroPadding3D",
    "Concatenate",
    "Embedding",
    "Masking",
)
_RULES = {
    "Dense": _dense_like,
    "Conv1D": _dense_like,
    "Conv2D": _dense_like,
    "Conv3D": _dense_like,
    "DepthwiseConv1D": _depthwise,
    "DepthwiseConv2D": _depthwise,
    "SeparableConv1D": _separable,
    "SeparableConv2D": _separable,
    "Conv1DTranspose": _transpose,
    "Conv2DTranspose": _transpose,
    "SimpleRNN": _recurrent,
    "GRU": _recurrent,
    "LSTM": _recurrent,
    "MultiHeadAttention": _mha,
    "Attention": _score_attention,
    "AdditiveAttention": _score_attention,
    "Dot": _dot,
    "Add": _merge,
    "Subtract": _merge,
    "Multiply": _merge,
    "Average": _merge,
    "Maximum": _merge,
    "Minimum": _merge,
    "Activation": _elementwise,
    "ReLU": _elementwise,
    "LeakyReLU": _elementwise,
    "ELU": _elementwise,
    "Softmax": _elementwise,
    "PReLU": _elementwise,
    "PositionalEncoding": _elementwise,
    "PositionEmbedding": _elementwise,
    "BatchNormalization": _norm,
    "LayerNormalization": _norm,
    "GroupNormalization": _norm,
    "MaxPooling1D": _pool,
    "MaxPooling2D": _pool,
    "AveragePooling1D": _pool,
    "AveragePooling2D": _pool,
    "MaxPooling3D": _pool,
    "AveragePooling3D": _pool,
    "GlobalAveragePooling1D": _global_pool,
    "GlobalAveragePooling2D": _global_pool,
    "GlobalMaxPooling1D": _global_pool,
    "GlobalMaxPooling2D": _global_pool,
    "TimeDistributed": _time_distributed,
    "Bidirectional": _bidirectional,
}


def layer_flops(layer, input_shapes, output_shape) -> int | None:
    """Forward FLOPs of one sample through ``layer`` (shapes without the batch axis); None for a type without a rule."""
    name = type(layer).__name__
    if name in _ZERO:
        return 0
    rule = _RULES.get(name)
    if rule is None:
        return None
    f = rule(layer, [tuple(s) for s in input_shapes], output_shape)
    return None if f is None else int(f)


def node_flops(node, activation=None) -> int | None:
    """A graph node's FLOPs, and with the Activation node of its entry's ``activation`` key that one's too
    (1 per output element)."""
    f = layer_flops(node.layer, node.layer.input_shapes, node.output_shape)
    if f is not None and activation is not None:
        f += _n(node.output_shape)
    return f


def model_flops(model) -> tuple[dict[str, int | None], int]:
    """({entry name: FLOPs or None}, total of the known ones) for one sample's forward pass."""
    per = {e.name: node_flops(e.node, e.activation) for e in model.entries()}
    return per, int(sum(f for f in per.values() if f is not None))
