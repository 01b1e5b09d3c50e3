"""ONNX converters for nnctl's layers: one function per layer type, emitting the same maths as its forward.

A converter is ``convert(g, layer, ins, masks, params) -> output name (or list of names)``: ``ins`` are
the input tensor names, ``masks`` the (N, T) bool padding-mask names per input (None without one),
``params`` the layer's weights as host arrays. Layers without a converter, and uses ONNX cannot express
exactly, raise ``Unsupported`` with the reason.
"""

from __future__ import annotations

import math

import numpy as np

from nnctl.interop.onnx_activations import activation, onnx_type
from nnctl.interop.onnx_graph import CONVERTERS, Unsupported, converts

_NEG = -1e9  # MultiHeadAttention's masked score (nnctl/layers/attention.py)


@converts("Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise", "GaussianDropout")
def _identity(g, layer, ins, masks, p):
    return g.op("Identity", [ins[0]])


# -- core --------------------------------------------------------------------------------------------
@converts("Dense")
def _dense(g, layer, ins, masks, p):
    y = g.op("MatMul", [ins[0], g.const(p["kernel"], "kernel")])
    return g.op("Add", [y, g.const(p["bias"], "bias")]) if layer.use_bias else y


@converts("Flatten")
def _flatten(g, layer, ins, masks, p):
    return g.reshape(ins[0], [-1])


@converts("Reshape")
def _reshape(g, layer, ins, masks, p):
    return g.reshape(ins[0], list(layer._shape))


@converts("Add")
def _add(g, layer, ins, masks, p):
    return g.op("Sum", list(ins)) if len(ins) > 1 else g.op("Identity", ins)


@converts("Multiply")
def _multiply(g, layer, ins, masks, p):
    y = ins[0]
    for x in ins[1:]:
        y = g.op("Mul", [y, x])
    return y


@converts("Subtract")
def _subtract(g, layer, ins, masks, p):
    return g.op("Sub", list(ins))


@converts("Average")
def _average(g, layer, ins, masks, p):
    return g.op("Mul", [g.op("Sum", list(ins)), g.const(1.0 / len(ins))])


@converts("Maximum")
def _maximum(g, layer, ins, masks, p):
    return g.op("Max", list(ins))


@converts("Minimum")
def _minimum(g, layer, ins, masks, p):
    return g.op("Min", list(ins))


@converts("Concatenate")
def _concat(g, layer, ins, masks, p):
    return g.op("Concat", list(ins), axis=layer._ax)


@converts("Cropping1D")
def _crop1d(g, layer, ins, masks, p):
    a, b = layer.cropping
    t = layer.input_shapes[0][0]
    return g.slice(ins[0], [a], [t - b], [1])


@converts("Cropping2D")
def _crop2d(g, layer, ins, masks, p):
    h, w = layer.input_shapes[0][:2]
    (top, bottom), (left, right) = layer._crop
    return g.slice(ins[0], [top, left], [h - bottom, w - right], [1, 2])


@converts("ZeroPadding2D", "ZeroPadding1D")
def _zero_pad(g, layer, ins, masks, p):
    rank = len(layer.input_shapes[0])  # 3 for images, 2 for sequences (whose _pads lead with a dummy height)
    spatial = [tuple(int(v) for v in pair) for pair in (layer._pads if rank == 3 else layer._pads[1:])]
    before = [0] + [a for a, _ in spatial] + [0]
    after = [0] + [b for _, b in spatial] + [0]
    return g.op("Pad", [ins[0], g.ints(before + after, "pads")], mode="constant")


@converts("UpSampling2D")
def _upsample2d(g, layer, ins, masks, p):
    h, w, c = layer.input_shapes[0]
    sh, sw = layer._size
    x6 = g.reshape(ins[0], [h, 1, w, 1, c])
    y = g.op("Expand", [x6, g.ints([1, 1, sh, 1, sw, 1])])
    return g.reshape(y, [h * sh, w * sw, c])


@converts("UpSampling1D")
def _upsample1d(g, layer, ins, masks, p):
    t, c = layer.input_shapes[0]
    s = int(layer.size)
    y = g.op("Expand", [g.reshape(ins[0], [t, 1, c]), g.ints([1, 1, s, 1])])
    return g.reshape(y, [t * s, c])


@converts("Permute")
def _permute(g, layer, ins, masks, p):
    return g.transpose(ins[0], [0, *[int(d) for d in layer.dims]])


@converts("RepeatVector")
def _repeat(g, layer, ins, masks, p):
    return g.op("Expand", [g.unsqueeze(ins[0], [1]), g.ints([1, int(layer.n), 1])])


@converts("Masking")
def _masking(g, layer, ins, masks, p):
    return g.op("Mul", [ins[0], g.op("Cast", [_masking_keep(g, layer, ins[0], keepdims=True)], to=onnx_type(g))])


def _masking_keep(g, layer, x, keepdims=False):
    """m[n, t] = any_f(x[n, t, f] != mask_value), as bool (keepdims: trailing axes of size 1)."""
    rank = len(layer.input_shapes[0]) + 1
    differs = g.op("Cast", [g.op("Not", [g.op("Equal", [x, g.const(layer.mask_value)])])], to=onnx_type(g))
    any_ = g.reduce("ReduceMax", differs, list(range(2, rank)), keepdims=keepdims)
    return g.op("Cast", [any_], to=9)  # BOOL


# -- convolution and pooling (channels first inside, NHWC outside) -------------------------------------
def _nchw(g, x, rank):
    return g.transpose(x, [0, 2, 1] if rank == 1 else [0, 3, 1, 2])


def _nhwc(g, x, rank):
    return g.transpose(x, [0, 2, 1] if rank == 1 else [0, 2, 3, 1])


def _onnx_pads(layer, rank):
    pads = layer._pads[2 - rank :]
    return [a for a, _ in pads] + [b for _, b in pads]


@converts("Conv2D", "Conv1D")
def _conv(g, layer, ins, masks, p):
    r = layer.rank
    k = np.asarray(p["kernel"])  # (KH, KW, C, F) or (K, C, F) -> (F, C, KH, KW)
    w = np.transpose(k, (3, 2, 0, 1) if r == 2 else (2, 1, 0))
    inputs = [_nchw(g, ins[0], r), g.const(w, "kernel")]
    if layer.use_bias:
        inputs.append(g.const(p["bias"], "bias"))
    y = g.op(
        "Conv",
        inputs,
        kernel_shape=list(layer._k[2 - r :]),
        strides=list(layer._s[2 - r :]),
        dilations=list(layer._d[2 - r :]),
        pads=_onnx_pads(layer, r),
    )
    return _nhwc(g, y, r)


@converts("DepthwiseConv2D", "DepthwiseConv1D", "SeparableConv2D", "SeparableConv1D")
def _depthwise(g, layer, ins, masks, p):
    r = layer.rank
    if not hasattr(layer, "_k") or "depthwise_kernel" not in p:
        raise Unsupported("its weights are not in the depthwise layout this exporter knows")
    dk = np.asarray(p["depthwise_kernel"])  # (KH, KW, C, M) or (K, C, M) -> (C*M, 1, KH, KW)
    c, m = dk.shape[-2], dk.shape[-1]
    w = np.transpose(dk.reshape(*dk.shape[:-2], c * m), (-1, *range(r)))[:, None]
    separable = "pointwise_kernel" in p
    inputs = [_nchw(g, ins[0], r), g.const(w, "depthwise_kernel")]
    if layer.use_bias and not separable:
        inputs.append(g.const(p["bias"], "bias"))
    y = g.op(
        "Conv",
        inputs,
        kernel_shape=list(layer._k[2 - r :]),
        strides=list(layer._s[2 - r :]),
        dilations=list(layer._d[2 - r :]),
        pads=_onnx_pads(layer, r),
        group=c,
    )
    y = _nhwc(g, y, r)
    if separable:
        y = g.op("MatMul", [y, g.const(np.asarray(p["pointwise_kernel"]).reshape(c * m, -1), "pointwise_kernel")])
        if layer.use_bias:
            y = g.op("Add", [y, g.const(p["bias"], "bias")])
    return y


@converts("MaxPooling2D", "AveragePooling2D", "MaxPooling1D", "AveragePooling1D")
def _pool(g, layer, ins, masks, p):
    r = layer.rank
    attrs = {"kernel_shape": list(layer._p[2 - r :]), "strides": list(layer._s[2 - r :]), "pads": _onnx_pads(layer, r)}
    if layer.op == "avg":  # nnctl divides by the real (unpadded) pixels of each window
        y = g.op("AveragePool", [_nchw(g, ins[0], r)], count_include_pad=0, **attrs)
    else:  # padding counts as -inf, as nnctl pads max pooling
        y = g.op("MaxPool", [_nchw(g, ins[0], r)], **attrs)
    return _nhwc(g, y, r)


@converts("GlobalAveragePooling2D", "GlobalMaxPooling2D", "GlobalAveragePooling1D", "GlobalMaxPooling1D")
def _global_pool(g, layer, ins, masks, p):
    axes = [1, 2] if layer.rank == 2 else [1]
    x, mask = ins[0], masks[0] if layer.rank == 1 else None
    if mask is None:
        return g.reduce("ReduceMean" if layer.op == "avg" else "ReduceMax", x, axes, keepdims=False)
    valid = g.unsqueeze(mask, [2])  # (N, T, 1)
    if layer.op == "avg":  # mean over real steps; an all-padding row gives 0
        w = g.op("Cast", [valid], to=onnx_type(g))
        total = g.reduce("ReduceSum", g.op("Mul", [x, w]), [1], keepdims=False)
        count = g.op("Max", [g.reduce("ReduceSum", w, [1], keepdims=False), g.const(1.0)])
        return g.op("Mul", [total, g.op("Reciprocal", [count])])
    best = g.reduce("ReduceMax", g.op("Where", [valid, x, g.const(-np.inf)]), [1], keepdims=False)
    any_valid = g.op("Cast", [g.reduce("ReduceMax", g.op("Cast", [valid], to=onnx_type(g)), [1], keepdims=False)], to=9)
    return g.op("Where", [any_valid, best, g.const(0.0)])


# -- normalisation -----------------------------------------------------------------------------------
@converts("BatchNormalization")
def _batchnorm(g, layer, ins, masks, p):
    dt = g.dtype  # the inference form nnctl computes: y = x a + b with a, b folded in the model dtype
    inv = (1 / np.sqrt(p["moving_variance"].astype(dt) + dt.type(layer.epsilon))).astype(dt)
    a = inv if "gamma" not in p else (p["gamma"].astype(dt) * inv).astype(dt)
    b = (-p["moving_mean"].astype(dt) * a).astype(dt)
    if "beta" in p:
        b = (b + p["beta"].astype(dt)).astype(dt)
    return g.op("Add", [g.op("Mul", [ins[0], g.const(a, "scale")]), g.const(b, "shift")])


@converts("LayerNormalization", "GroupNormalization")
def _layernorm(g, layer, ins, masks, p):
    x = ins[0]
    shape = list(layer.input_shapes[0])
    grouped = type(layer).__name__ == "GroupNormalization"
    if grouped:  # (N, S, G, C/G) view, statistics over S and C/G
        x = g.reshape(x, [-1, layer.groups, shape[-1] // layer.groups])
    axes = list(layer.stat_axes) if grouped else [-1]
    centred = g.op("Sub", [x, g.reduce("ReduceMean", x, axes)])
    var = g.reduce("ReduceMean", g.op("Mul", [centred, centred]), axes)
    inv = g.op("Reciprocal", [g.op("Sqrt", [g.op("Add", [var, g.const(layer.epsilon)])])])
    y = g.op("Mul", [centred, inv])
    if grouped:
        y = g.reshape(y, shape)
    if "gamma" in p:
        y = g.op("Mul", [y, g.const(p["gamma"], "gamma")])
    if "beta" in p:
        y = g.op("Add", [y, g.const(p["beta"], "beta")])
    return y


# -- embeddings --------------------------------------------------------------------------------------
@converts("Embedding")
def _embedding(g, layer, ins, masks, p):
    ids = ins[0]
    if g.input_kinds.get(ids, "f") == "f":
        ids = g.op("Round", [ids])  # nnctl rounds float ids (round half to even, as numpy.rint)
    ids = g.op("Cast", [ids], to=7)  # INT64
    return g.op("Gather", [g.const(p["embeddings"], "embeddings"), ids], axis=0)


@converts("PositionalEncoding")
def _positional(g, layer, ins, masks, p):
    t = layer.input_shapes[0][0]
    return g.op("Add", [ins[0], g.const(layer._host[:t].astype(g.dtype), "positions")])


@converts("PositionEmbedding")
def _position_embedding(g, layer, ins, masks, p):
    t = layer.input_shapes[0][0]
    return g.op("Add", [ins[0], g.const(p["embeddings"][:t], "positions")])


# -- attention ---------------------------------------------------------------------------------------
@converts("MultiHeadAttention")
def _mha(g, layer, ins, masks, p):
    q_in = ins[0]
    v_in = ins[1] if len(ins) > 1 else q_in
    k_in = ins[2] if len(ins) > 2 else v_in
    shapes = layer.input_shapes
    tq = shapes[0][0]
    tv = shapes[1][0] if len(shapes) > 1 else tq
    H = layer.num_heads

    def project(x, name, t, perm):
        W = p[f"{name}_kernel"]
        y = g.op("MatMul", [x, g.const(W.reshape(W.shape[0], -1), f"{name}_kernel")])
        if layer.use_bias:
            y = g.op("Add", [y, g.const(p[f"{name}_bias"].reshape(-1), f"{name}_bias")])
        return g.transpose(g.reshape(y, [t, H, W.shape[-1]]), perm)  # (N, H, T, d) or (N, H, d, T)

    Q = g.op("Mul", [project(q_in, "query", tq, [0, 2, 1, 3]), g.const(1.0 / math.sqrt(layer.key_dim))])
    KT = project(k_in, "key", tv, [0, 2, 3, 1])
    V = project(v_in, "value", tv, [0, 2, 1, 3])
    S = g.op("MatMul", [Q, KT])  # (N, H, Tq, Tv)
    # nnctl passes MultiHeadAttention one mask per input and masks the keys with the value's (_allowed)
    key_mask = masks[min(1, len(masks) - 1)] if masks else None
    allowed = None
    if key_mask is not None:
        allowed = g.unsqueeze(key_mask, [1, 2])
    if layer.causal:
        tri = g.const(np.tril(np.ones((tq, tv), dtype=bool))[None, None], "causal", np.bool_)
        allowed = tri if allowed is None else g.op("And", [allowed, tri])
    if allowed is not None:
        S = g.op("Where", [allowed, S, g.const(_NEG)])
    P = g.op("Softmax", [S], axis=-1)
    heads = g.transpose(g.op("MatMul", [P, V]), [0, 2, 1, 3])  # (N, Tq, H, vd)
    Wo = p["output_kernel"]
    y = g.op("MatMul", [g.reshape(heads, [tq, -1]), g.const(Wo.reshape(-1, Wo.shape[-1]), "output_kernel")])
    if layer.use_bias:
        y = g.op("Add", [y, g.const(p["output_bias"], "output_bias")])
    return y


@converts("TimeDistributed")
def _time_distributed(g, layer, ins, masks, p):
    """The inner layer on (N*T, *S), as nnctl runs it, then back to (N, T, *S')."""
    inner = layer.inner
    convert = CONVERTERS.get(type(inner).__name__)
    if convert is None:
        raise Unsupported(f"its inner {type(inner).__name__} layer has no ONNX form")
    t, *rest = layer.input_shapes[0]
    y = convert(g, inner, [g.op("Reshape", [ins[0], g.ints([-1, *rest])])], [None], p)
    if layer._act is not None:
        y = activation(g, inner.activation, y, getattr(inner, "alpha", None))
    return g.op("Reshape", [y, g.ints([-1, t, *inner.output_shape])])
