"""Pooling layers: windowed max/average in 1-D and 2-D, and global max/average (masked in 1-D).

Windowed pooling walks the PH*PW offsets of one zero-copy window view (nnctl/ops/im2col.py); a
sequence is an image of height 1, so the 1-D and 2-D layers share one code path. Padding "same"
follows Keras: max pooling pads with -inf, average pooling divides by the count of real pixels.
"""

from __future__ import annotations

import numpy as np

from nnctl import backend as B
from nnctl.fields import PositiveInt
from nnctl.layers.base import CHANNELS_LAST, Layer, expect_input, register
from nnctl.layers.conv import Padding
from nnctl.ops import im2col as K


class _Pool(Layer):
    """Shared windowed pooling over NHWC windows of size (PH, PW) and strides (sh, sw).

    max: y = max over the window; the gradient goes to the first maximum in row-major window order.
    avg: y = sum over the window / number of real (unpadded) pixels in it.
    """

    rank = 2
    op = "max"

    def __init__(
        self,
        pool_size: PositiveInt | list[PositiveInt] = 2,
        strides: PositiveInt | list[PositiveInt] | None = None,
        padding: Padding = "valid",
        **kw,
    ):
        super().__init__(**kw)
        self.pool_size, self.strides, self.padding = pool_size, strides, padding

    def build(self, input_shapes, ctx):
        shape, r = input_shapes[0], self.rank
        expect_input(self, shape, CHANNELS_LAST[r])
        p = K.as_tuple(self.pool_size, r, "pool_size")
        s = p if self.strides is None else K.as_tuple(self.strides, r, "strides")
        mode = K.check_padding(self.padding)
        self._p, self._s = (1,) * (2 - r) + p, (1,) * (2 - r) + s
        spatial = (1,) * (2 - r) + tuple(shape[:-1])
        geo = [K.output_size(n, pp, ss, 1, mode) for n, pp, ss in zip(spatial, self._p, self._s)]
        self._out = tuple(o for o, _ in geo)
        self._pads = tuple(pd for _, pd in geo)
        if 0 in self._out:
            raise ValueError(f"pool_size {list(p)} is larger than the input {list(shape[:-1])} with padding 'valid'")
        if self.op == "avg":
            # real pixels per window is separable: rows covered times columns covered
            counts = [
                np.array([min(o * ss - pd[0] + pp, n) - max(o * ss - pd[0], 0) for o in range(out)])
                for n, pp, ss, pd, out in zip(spatial, self._p, self._s, self._pads, self._out)
            ]
            self._inv_count_host = (1.0 / np.outer(counts[0], counts[1]))[..., None].astype(self.dtype)
            self._inv_count = None
        return (*self._out[2 - r :], shape[-1])

    def _image(self, a):
        return a if self.rank == 2 else a[:, None]

    def _inverse_count(self):
        """(OH, OW, 1) reciprocal window counts on the active device, moved there once."""
        if self._inv_count is None or not isinstance(self._inv_count, B.xp.ndarray):
            self._inv_count = B.asarray(self._inv_count_host)
        return self._inv_count

    def forward(self, x, training=False, mask=None):
        xpad = K.pad(self._image(x), self._pads, value=-np.inf if self.op == "max" else 0.0)
        win = K.windows(xpad, self._p, self._s, (1, 1), self._out)
        offs = K.offsets(self._p)
        y = win[:, :, :, 0, 0].copy()
        for i, j in offs[1:]:
            if self.op == "max":
                B.xp.maximum(y, win[:, :, :, i, j], out=y)
            else:
                y += win[:, :, :, i, j]
        if self.op == "avg":
            y *= self._inverse_count()
        # max needs the input and output to find the arg max again; average needs only the shape
        cache = (xpad, y) if self.op == "max" else (None, None)
        return (y if self.rank == 2 else y[:, 0]), (*cache, xpad.shape)

    def backward(self, g, cache):
        xp = B.xp
        xpad, y, padded_shape = cache
        g = self._image(g)
        dx = xp.zeros(padded_shape, dtype=g.dtype)
        dwin = K.windows(dx, self._p, self._s, (1, 1), self._out)
        if self.op == "avg":
            gs = g * self._inverse_count()
            for i, j in K.offsets(self._p):
                dwin[:, :, :, i, j] += gs
        else:
            win = K.windows(xpad, self._p, self._s, (1, 1), self._out)
            left = g.copy()  # gradient not yet routed: zeroed once its window's first maximum is found
            hit, routed = xp.empty(g.shape, dtype=bool), xp.empty_like(g)  # reused: no temporaries per offset
            for i, j in K.offsets(self._p):
                xp.equal(win[:, :, :, i, j], y, out=hit)
                xp.multiply(left, hit, out=routed)
                dwin[:, :, :, i, j] += routed
                left -= routed  # exact: each entry loses either itself or 0
        dx = K.crop(dx, self._pads)
        return (dx if self.rank == 2 else dx[:, 0],)

    def compute_mask(self, mask, inputs):
        return None  # pooling changes the number of steps


class _Pool2D(_Pool):
    # a pair default as in Keras (an int default would make the spec validator refuse a list)
    def __init__(
        self,
        pool_size: PositiveInt | list[PositiveInt] = (2, 2),
        strides: PositiveInt | list[PositiveInt] | None = None,
        padding: Padding = "valid",
        **kw,
    ):
        super().__init__(pool_size, strides=strides, padding=padding, **kw)


@register()
class MaxPooling2D(_Pool2D):
    """y[n,p,q,c] = max_{i<PH, j<PW} xpad[n, p*sh + i, q*sw + j, c]; (N, H, W, C) -> (N, OH, OW, C)."""

    rank, op = 2, "max"


@register()
class AveragePooling2D(_Pool2D):
    """y[n,p,q,c] = mean of the real pixels of the window at (p*sh, q*sw); (N, H, W, C) -> (N, OH, OW, C)."""

    rank, op = 2, "avg"


@register()
class MaxPooling1D(_Pool):
    """y[n,t,c] = max_{k<P} xpad[n, t*s + k, c]; (N, T, C) -> (N, OT, C)."""

    rank, op = 1, "max"


@register()
class AveragePooling1D(_Pool):
    """y[n,t,c] = mean of the real steps of the window at t*s; (N, T, C) -> (N, OT, C)."""

    rank, op = 1, "avg"


class _Global(Layer):
    """Shared global pooling over every axis between the batch and the channel axis."""

    rank = 2
    op = "max"

    def build(self, input_shapes, ctx):
        shape = input_shapes[0]
        expect_input(self, shape, CHANNELS_LAST[self.rank])
        return (shape[-1],)

    def forward(self, x, training=False, mask=None):
        xp = B.xp
        x3 = x.reshape(x.shape[0], -1, x.shape[-1])  # (N, S, C), S = all positions
        valid = None
        if mask is not None and self.rank == 1:
            valid = B.asarray(mask, dtype=bool)[:, :, None]
        if self.op == "avg":
            if valid is None:
                return x3.mean(axis=1), (x.shape, None)
            w = valid.astype(x.dtype)
            # an all-padding row averages to 0 instead of 0/0
            inv = 1.0 / xp.maximum(w.sum(axis=1), 1)
            return (x3 * w).sum(axis=1) * inv, (x.shape, w * inv[:, None, :])
        src = x3 if valid is None else xp.where(valid, x3, -xp.inf)
        idx = src.argmax(axis=1)  # first maximum on ties
        y = xp.take_along_axis(x3, idx[:, None, :], axis=1)[:, 0]
        if valid is not None:
            any_valid = valid.any(axis=1)  # (N, 1): a fully masked row gives 0 and no gradient
            y = xp.where(any_valid, y, 0)
            idx = xp.where(any_valid, idx, -1)
        return y, (x.shape, idx)

    def backward(self, g, cache):
        xp = B.xp
        x_shape, aux = cache
        n, c = x_shape[0], x_shape[-1]
        s = int(np.prod(x_shape[1:-1]))
        if self.op == "avg":
            dx = xp.empty((n, s, c), dtype=g.dtype)
            dx[...] = g[:, None, :] * (1.0 / s) if aux is None else g[:, None, :] * aux
        else:
            hit = xp.arange(s)[None, :, None] == aux[:, None, :]
            dx = xp.where(hit, g[:, None, :], 0).astype(g.dtype, copy=False)
        return (dx.reshape(x_shape),)

    def compute_mask(self, mask, inputs):
        return None


@register()
class GlobalAveragePooling2D(_Global):
    """y[n,c] = mean_{h,w} x[n,h,w,c]; (N, H, W, C) -> (N, C)."""

    rank, op = 2, "avg"


@register()
class GlobalMaxPooling2D(_Global):
    """y[n,c] = max_{h,w} x[n,h,w,c] (gradient to the first maximum); (N, H, W, C) -> (N, C)."""

    rank, op = 2, "max"


@register()
class GlobalAveragePooling1D(_Global):
    """y[n,c] = sum_t m[n,t] x[n,t,c] / sum_t m[n,t] over real steps (m = mask, all ones without one);
    (N, T, C) -> (N, C)."""

    rank, op = 1, "avg"


@register()
class GlobalMaxPooling1D(_Global):
    """y[n,c] = max over real steps t of x[n,t,c] (0 when every step is padding); (N, T, C) -> (N, C)."""

    rank, op = 1, "max"
