"""Pooling layers: windowed max/average in 1-D and 2-D, and global max/average (masked in 1-D).

Windowed pooling walks the PH*PW offsets of one zero-copy window view (nnctl/ops/im2col.py); a
sequence is an image of height 1, so the 1-D and 2-D layers share one code path. Padding "same"
follows Keras: max pooling pads with -inf, average pooling divides by the count of real pixels.
"""

from __future__ import annotations

import numpy as np

from nnctl import backend as B
from nnctl import kernels, threads
from nnctl.fields import PositiveInt
from nnctl.layers.base import CHANNELS_LAST, Layer, expect_input, register
from nnctl.layers.conv import Padding
from nnctl.ops import im2col as K


class _Pool(Layer):
    """Shared windowed pooling over NHWC windows of size (PH, PW) and strides (sh, sw).

    max: y = max over the window; the gradient goes to the first maximum in row-major window order
    (training keeps that index per window: ``_window_max``).
    avg: y = sum over the window / number of real (unpadded) pixels in it.
    """

    rank = 2
    op = "max"
    slices_batch = True

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
        if self.op == "max" and K.compiled(xpad, training):  # one compiled pass instead of PH*PW array passes
            y, idx = self._window_max_compiled(xpad, want_index=training)
            cache = (idx, None if training else xpad)
        elif self.op == "max":
            # training keeps a 1-byte index of each window's first maximum instead of the input and output
            # (backward then writes g through it; no comparisons of floats there); inference keeps the input,
            # from which a backward without a training forward finds the index again
            y, idx = _window_max(win, want_index=training)
            cache = (idx, None if training else xpad)
        else:
            y = win[:, :, :, 0, 0].copy()
            for i, j in K.offsets(self._p)[1:]:
                y += win[:, :, :, i, j]
            y *= self._inverse_count()
            cache = (None, None)
        return (y if self.rank == 2 else y[:, 0]), (*cache, xpad.shape)

    def backward(self, g, cache):
        xp = B.xp
        idx, xpad, padded_shape = cache
        g = self._image(g)
        offs = K.offsets(self._p)
        # windows that neither overlap nor leave pixels out cover every input pixel exactly once: each dx
        # element is then written once (no zeroing pass); otherwise untouched pixels need their zeros
        tiled = self._s == self._p and all(o * s == n for o, s, n in zip(self._out, self._s, padded_shape[1:3]))
        if self.op == "max" and kernels.active():
            if idx is None:
                idx = self._window_max_compiled(xpad, want_index=True)[1]
            dx = np.empty(padded_shape, dtype=g.dtype)
            backward = kernels.load("pool").max_pool_backward

            def piece(worker, i, a, b):  # each sample's dx is its own: slices side by side, the same bits
                backward(g[a:b], idx[a:b], *self._p, *self._s, dx[a:b], tiled)

            threads.run_slices(len(g), threads.slice_size(len(g)), piece)
            dx = K.crop(dx, self._pads)
            return (dx if self.rank == 2 else dx[:, 0],)
        if self.op == "max" and idx is None:
            idx = _window_max(K.windows(xpad, self._p, self._s, (1, 1), self._out), want_index=True)[1]
        disjoint = all(s >= p for s, p in zip(self._s, self._p))
        dx = (xp.empty if tiled else xp.zeros)(padded_shape, dtype=g.dtype)
        dwin = K.windows(dx, self._p, self._s, (1, 1), self._out)
        if self.op == "avg":
            gs = g * self._inverse_count()
            for i, j in offs:
                if disjoint:
                    dwin[:, :, :, i, j] = gs
                else:
                    dwin[:, :, :, i, j] += gs
        else:
            hit = xp.empty(g.shape, dtype=bool)
            routed = None if disjoint else xp.empty_like(g)
            for k, (i, j) in enumerate(offs):
                xp.equal(idx, k, out=hit)
                if disjoint:  # g where offset k holds the window's first maximum, 0 elsewhere: dx written once
                    xp.multiply(g, hit, out=dwin[:, :, :, i, j])
                else:  # overlapping windows: a pixel gathers the gradient of every window it is first in
                    xp.multiply(g, hit, out=routed)
                    dwin[:, :, :, i, j] += routed
        dx = K.crop(dx, self._pads)
        return (dx if self.rank == 2 else dx[:, 0],)

    def _window_max_compiled(self, xpad, want_index: bool):
        """``_window_max`` of xpad's windows by the compiled kernel (nnctl/kernels/pool.py): the same y and
        first-maximum index (int8, int16 past 127 offsets), in one pass over each window."""
        kp = kernels.load("pool")
        n, c = xpad.shape[0], xpad.shape[3]
        y = np.empty((n, *self._out, c), dtype=xpad.dtype)
        kind = np.int8 if self._p[0] * self._p[1] <= 127 else np.int16
        idx = np.empty(y.shape if want_index else (0, 0, 0, 0), dtype=kind)

        def piece(worker, i, a, b):  # slices of the batch side by side (nnctl/threads.py)
            kp.max_pool(xpad[a:b], *self._p, *self._s, y[a:b], idx[a:b], want_index)

        threads.run_slices(n, threads.slice_size(n), piece)
        return y, (idx if want_index else None)

    def compute_mask(self, mask, inputs):
        return None  # pooling changes the number of steps


def _window_max(win, want_index: bool):
    """y = max over each window of a (N, OH, OW, PH, PW, C) view, and (when ``want_index``) the row-major
    offset k = i*PW + j of its first maximum as int8 (int16 past 127 offsets), else None.

    Offsets are scanned in order and the index moves only on a strictly greater value, so ties keep the
    first one (nnctl's rule, as TensorFlow's). The index update is branch-free integer arithmetic,
    idx += (k - idx) * [x_k > y]: a masked copy (copyto with where=) of a random mask measured 5 ms per
    offset at (128, 12, 12, 64) against 0.15 ms for these three int8 passes.
    """
    xp = B.xp
    offs = K.offsets(win.shape[3:5])
    y = win[:, :, :, 0, 0].copy()
    if not want_index:
        for i, j in offs[1:]:
            xp.maximum(y, win[:, :, :, i, j], out=y)
        return y, None
    kind = xp.int8 if len(offs) <= 127 else xp.int16
    idx = xp.zeros(y.shape, dtype=kind)
    greater = xp.empty(y.shape, dtype=bool)
    step = xp.empty(y.shape, dtype=kind)
    for k, (i, j) in enumerate(offs[1:], 1):
        wk = win[:, :, :, i, j]
        xp.greater(wk, y, out=greater)
        xp.maximum(y, wk, out=y)
        xp.subtract(kind(k), idx, out=step)
        step *= greater
        idx += step
    return y, idx


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
