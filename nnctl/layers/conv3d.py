"""Volumetric layers: Conv3D, MaxPooling3D, AveragePooling3D, UpSampling3D, ZeroPadding3D (NDHWC layout).

A volume is (N, D, H, W, C), channels last as Keras. Each op walks the KD*KH*KW kernel offsets over
strided views of the padded input: offset (a, b, c) sees xpad[n, p*sd + a*dd, q*sh + b*dh, r*sw + c*dw, :]
for every output voxel (p, q, r), so a convolution is one matrix product of the stacked offsets
(the 3-D im2col) with the (KD*KH*KW*C, F) kernel, and every adjoint adds each offset back through the
same view. Padding "same" follows Keras (the extra voxel at the end), as in nnctl/ops/im2col.py.
"""

from __future__ import annotations

import numpy as np

from nnctl import backend as B
from nnctl import initializers
from nnctl.fields import NonNegativeInt, PositiveInt
from nnctl.initializers import InitializerName
from nnctl.layers.base import CHANNELS_LAST, Layer, expect_input, register
from nnctl.layers.conv import Padding
from nnctl.ops import im2col as K
from nnctl.ops.activations import ActivationName


def _offsets(k):
    return [(a, b, c) for a in range(k[0]) for b in range(k[1]) for c in range(k[2])]


def _window(xpad, off, out, s, d):
    """The (N, OD, OH, OW, C) view of padded ``xpad`` seen by kernel offset ``off``."""
    return xpad[(slice(None), *(slice(o * dd, o * dd + (n - 1) * ss + 1, ss) for o, n, ss, dd in zip(off, out, s, d)))]


def _pad3(x, pads, value=0.0):
    if not any(a or b for a, b in pads):
        return x
    return B.xp.pad(x, ((0, 0), *pads, (0, 0)), constant_values=value)


def _crop3(x, pads):
    return x[(slice(None), *(slice(a, x.shape[i + 1] - b) for i, (a, b) in enumerate(pads)))]


def _geometry(layer, shape, k, s, d, padding):
    """Output size and (before, after) padding per spatial axis for a (D, H, W, C) input."""
    expect_input(layer, shape, CHANNELS_LAST[3])
    mode = K.check_padding(padding)
    geo = [K.output_size(n, kk, ss, dd, mode) for n, kk, ss, dd in zip(shape[:3], k, s, d)]
    out, pads = tuple(o for o, _ in geo), tuple(p for _, p in geo)
    if 0 in out:
        span = [(kk - 1) * dd + 1 for kk, dd in zip(k, d)]
        raise ValueError(
            f"{type(layer).__name__}: the window spans {span} but the input is only {list(shape[:3])} with padding "
            "'valid'; use a smaller window or padding 'same'"
        )
    return out, pads


@register()
class Conv3D(Layer):
    """3-D convolution (cross-correlation, as Keras): y[n,p,q,r,f] = b[f] + sum_{a,b,c,ch} xpad[n, p*sd + a*dd,
    q*sh + b*dh, r*sw + c*dw, ch] W[a,b,c,ch,f]; x (N, D, H, W, C_in), W (KD, KH, KW, C_in, F), y (N, OD, OH, OW, F).
    Backward: dW = cols^T g, db = sum g, dx = sum over offsets of g W[a,b,c]^T added into that offset's window."""

    activation_is_node = True

    def __init__(
        self,
        filters: PositiveInt,
        kernel_size: PositiveInt | list[PositiveInt],
        strides: PositiveInt | list[PositiveInt] = (1, 1, 1),
        padding: Padding = "valid",
        dilation_rate: PositiveInt | list[PositiveInt] = (1, 1, 1),
        activation: ActivationName | None = None,
        use_bias: bool = True,
        kernel_initializer: InitializerName = "glorot_uniform",
        bias_initializer: InitializerName = "zeros",
        **kw,
    ):
        super().__init__(**kw)
        self.filters, self.kernel_size, self.strides, self.padding = filters, kernel_size, strides, padding
        self.dilation_rate, self.activation, self.use_bias = dilation_rate, activation, use_bias
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer

    def build(self, input_shapes, rng):
        shape = input_shapes[0]
        self._k = K.as_tuple(self.kernel_size, 3, "kernel_size")
        self._s = K.as_tuple(self.strides, 3, "strides")
        self._d = K.as_tuple(self.dilation_rate, 3, "dilation_rate")
        self._out, self._pads = _geometry(self, shape, self._k, self._s, self._d, self.padding)
        self.add_param(
            "kernel", initializers.initialize(self.kernel_initializer, (*self._k, shape[-1], self.filters), rng)
        )
        if self.use_bias:
            self.add_param("bias", initializers.initialize(self.bias_initializer, (self.filters,), rng))
        return (*self._out, self.filters)

    def forward(self, x, training=False, mask=None):
        xpad = _pad3(x, self._pads)
        n, c = x.shape[0], x.shape[-1]
        offs = _offsets(self._k)
        cols = B.xp.empty((n, *self._out, len(offs), c), dtype=x.dtype)
        for i, off in enumerate(offs):
            cols[..., i, :] = _window(xpad, off, self._out, self._s, self._d)
        cols = cols.reshape(-1, len(offs) * c)
        y = cols @ self.params["kernel"].reshape(-1, self.filters)
        if self.use_bias:
            y += self.params["bias"]
        return y.reshape(n, *self._out, self.filters), (cols, xpad.shape)

    def backward(self, g, cache):
        xp = B.xp
        cols, padded_shape = cache
        g2 = g.reshape(-1, self.filters)
        self.grads["kernel"][...] = (cols.T @ g2).reshape(self.grads["kernel"].shape)
        if self.use_bias:
            self.grads["bias"][...] = g2.sum(axis=0)
        if not self.input_grads_needed[0]:
            return (None,)
        w = self.params["kernel"]
        dx = xp.zeros(padded_shape, dtype=g.dtype)
        shape = (g.shape[0], *self._out, padded_shape[-1])
        for off in _offsets(self._k):
            _window(dx, off, self._out, self._s, self._d)[...] += (g2 @ w[off].T).reshape(shape)
        return (_crop3(dx, self._pads),)

    def compute_mask(self, mask, inputs):
        return None


class _Pool3D(Layer):
    """Shared windowed pooling over (PD, PH, PW) windows: max (the gradient goes to the first maximum in
    row-major window order) or average (sum over the window / the number of real, unpadded voxels)."""

    op = "max"

    def __init__(
        self,
        pool_size: PositiveInt | list[PositiveInt] = (2, 2, 2),
        strides: PositiveInt | list[PositiveInt] | None = None,
        padding: Padding = "valid",
        **kw,
    ):
        super().__init__(**kw)
        self.pool_size, self.strides, self.padding = pool_size, strides, padding

    def build(self, input_shapes, rng):
        shape = input_shapes[0]
        self._p = K.as_tuple(self.pool_size, 3, "pool_size")
        self._s = self._p if self.strides is None else K.as_tuple(self.strides, 3, "strides")
        self._out, self._pads = _geometry(self, shape, self._p, self._s, (1, 1, 1), self.padding)
        if self.op == "avg":  # real voxels per window is separable: the product of the covered lengths per axis
            counts = [
                np.array([min(o * ss - pd[0] + pp, n) - max(o * ss - pd[0], 0) for o in range(out)])
                for n, pp, ss, pd, out in zip(shape[:3], self._p, self._s, self._pads, self._out)
            ]
            self._inv_count = (1.0 / np.einsum("i,j,k->ijk", *counts))[..., None]
        return (*self._out, shape[-1])

    def forward(self, x, training=False, mask=None):
        xp = B.xp
        xpad = _pad3(x, self._pads, -np.inf if self.op == "max" else 0.0)
        offs = _offsets(self._p)
        stack = xp.stack([_window(xpad, off, self._out, self._s, (1, 1, 1)) for off in offs], axis=-2)
        if self.op == "max":
            idx = stack.argmax(axis=-2)
            y = xp.take_along_axis(stack, idx[..., None, :], axis=-2)[..., 0, :]
            return y, (idx, xpad.shape)
        scale = xp.asarray(self._inv_count, dtype=x.dtype)
        return stack.sum(axis=-2) * scale, (None, xpad.shape)

    def backward(self, g, cache):
        xp = B.xp
        idx, padded_shape = cache
        dx = xp.zeros(padded_shape, dtype=g.dtype)
        if self.op == "avg":
            g = g * xp.asarray(self._inv_count, dtype=g.dtype)
        for i, off in enumerate(_offsets(self._p)):
            part = g if idx is None else g * (idx == i)
            _window(dx, off, self._out, self._s, (1, 1, 1))[...] += part
        return (_crop3(dx, self._pads),)

    def compute_mask(self, mask, inputs):
        return None  # a volume has no steps axis to mask (as Conv3D)


@register()
class MaxPooling3D(_Pool3D):
    """Max over (PD, PH, PW) windows: (N, D, H, W, C) -> (N, OD, OH, OW, C); 'same' pads with -inf."""

    op = "max"


@register()
class AveragePooling3D(_Pool3D):
    """Mean over (PD, PH, PW) windows of the real voxels: (N, D, H, W, C) -> (N, OD, OH, OW, C)."""

    op = "avg"


@register()
class UpSampling3D(Layer):
    """Nearest-neighbour upsampling: y[n, i, j, k, c] = x[n, i // sd, j // sh, k // sw, c];
    (N, D, H, W, C) -> (N, D*sd, H*sh, W*sw, C). Backward sums each sd*sh*sw block."""

    def __init__(self, size: PositiveInt | list[PositiveInt] = (2, 2, 2), **kw):
        super().__init__(**kw)
        self.size = size

    def build(self, input_shapes, rng):
        shape = input_shapes[0]
        expect_input(self, shape, CHANNELS_LAST[3])
        self._f = K.as_tuple(self.size, 3, "size")
        return (*(n * f for n, f in zip(shape[:3], self._f)), shape[-1])

    def forward(self, x, training=False, mask=None):
        y = x
        for axis, f in zip((1, 2, 3), self._f):
            y = B.xp.repeat(y, f, axis=axis)
        return y, x.shape

    def backward(self, g, shape):
        n, d, h, w, c = shape
        fd, fh, fw = self._f
        return (g.reshape(n, d, fd, h, fh, w, fw, c).sum(axis=(2, 4, 6)),)

    def compute_mask(self, mask, inputs):
        return None  # a volume has no steps axis to mask (as Conv3D)


@register()
class ZeroPadding3D(Layer):
    """Zeros around a volume: ``padding`` = p, [pd, ph, pw] or [[front, back], [top, bottom], [left, right]];
    (N, D, H, W, C) -> (N, D + 2pd, H + 2ph, W + 2pw, C)."""

    def __init__(self, padding: NonNegativeInt | list[NonNegativeInt | list[NonNegativeInt]] = (1, 1, 1), **kw):
        super().__init__(**kw)
        self.padding = padding

    def build(self, input_shapes, rng):
        shape = input_shapes[0]
        expect_input(self, shape, CHANNELS_LAST[3])
        p = self.padding
        p = [p] * 3 if isinstance(p, int) else list(p)
        if len(p) != 3:
            raise ValueError(f"padding must be an integer or a list of 3, found {self.padding!r}")
        self._pads = tuple((v, v) if isinstance(v, int) else tuple(v) for v in p)
        if not all(len(v) == 2 and all(isinstance(a, int) and a >= 0 for a in v) for v in self._pads):
            raise ValueError(
                f"padding must hold non-negative integers or [before, after] pairs, found {self.padding!r}"
            )
        return (*(n + a + b for n, (a, b) in zip(shape[:3], self._pads)), shape[-1])

    def forward(self, x, training=False, mask=None):
        return _pad3(x, self._pads), None

    def backward(self, g, cache):
        return (_crop3(g, self._pads),)

    def compute_mask(self, mask, inputs):
        return None  # a volume has no steps axis to mask (as Conv3D)
