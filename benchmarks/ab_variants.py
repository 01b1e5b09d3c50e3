"""Alternative implementations for ``profile_step.py --ab NAME``: each swaps one piece of nnctl for another
while enabled, so a same-process A/B compares today's code (A) with the variant (B) on the same model,
data and weights.

A variant is a function ``variant(enabled: bool)`` that installs (True) or removes (False) its patch.
Variants named ``*-legacy`` are nnctl's previous code, kept to show what a change bought; the others are
prototypes not (yet) in nnctl.
"""

from __future__ import annotations

import numpy as np

from nnctl import backend as B
from nnctl.layers import conv as conv_mod
from nnctl.layers import pool as pool_mod
from nnctl.ops import im2col as K

_saved: dict = {}


def _swap(owner, name: str, new, enabled: bool) -> None:
    key = (owner, name)
    if enabled and key not in _saved:
        _saved[key] = owner.__dict__[name]
        setattr(owner, name, new)
    elif not enabled and key in _saved:
        setattr(owner, name, _saved.pop(key))


# -- max pooling before the window-index change (equality against y in backward) -------------------------
def _legacy_pool_forward(self, x, training=False, mask=None):
    xpad = K.pad(self._image(x), self._pads, value=-np.inf if self.op == "max" else 0.0)
    win = K.windows(xpad, self._p, self._s, (1, 1), self._out)
    y = win[:, :, :, 0, 0].copy()
    for i, j in K.offsets(self._p)[1:]:
        if self.op == "max":
            B.xp.maximum(y, win[:, :, :, i, j], out=y)
        else:
            y += win[:, :, :, i, j]
    if self.op == "avg":
        y *= self._inverse_count()
    cache = (xpad, y) if self.op == "max" else (None, None)
    return (y if self.rank == 2 else y[:, 0]), (*cache, xpad.shape)


def _legacy_pool_backward(self, g, cache):
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
        left = g.copy()
        hit, routed = xp.empty(g.shape, dtype=bool), xp.empty_like(g)
        for i, j in K.offsets(self._p):
            xp.equal(win[:, :, :, i, j], y, out=hit)
            xp.multiply(left, hit, out=routed)
            dwin[:, :, :, i, j] += routed
            left -= routed
    dx = K.crop(dx, self._pads)
    return (dx if self.rank == 2 else dx[:, 0],)


def pool_legacy(enabled: bool) -> None:
    """Max pooling as before issue 22's second pass: backward compares the input with y per offset."""
    _swap(pool_mod._Pool, "forward", _legacy_pool_forward, enabled)
    _swap(pool_mod._Pool, "backward", _legacy_pool_backward, enabled)


# -- col2im: zeroing plus KH*KW strided additions (before: the first offset assigned) ---------------------
def _legacy_add_windows(x, cols, kernel, strides, dilation, out_hw) -> None:
    x[...] = 0
    n, c = x.shape[0], x.shape[3]
    win = K.windows(x, kernel, strides, dilation, out_hw)
    c6 = cols.reshape(n, out_hw[0], out_hw[1], kernel[0], kernel[1], c)
    for i, j in K.offsets(kernel):
        win[:, :, :, i, j] += c6[:, :, :, i, j]


def col2im_legacy(enabled: bool) -> None:
    """The convolution's input gradient as a zeroed chunk plus KH*KW strided additions."""
    _swap(K, "write_windows", _legacy_add_windows, enabled)


# -- the training chunk of a convolution (the patch matrix of one chunk of samples) ----------------------
def _chunk(mib: float):
    def variant(enabled: bool) -> None:
        key = (conv_mod, "_TRAINING_CHUNK_BYTES")
        if enabled and key not in _saved:
            _saved[key] = conv_mod._TRAINING_CHUNK_BYTES
            conv_mod._TRAINING_CHUNK_BYTES = int(mib * 2**20)
        elif not enabled and key in _saved:
            conv_mod._TRAINING_CHUNK_BYTES = _saved.pop(key)

    variant.__doc__ = f"Convolutions train in chunks of {mib} MiB of patches."
    return variant


VARIANTS = {
    "pool-legacy": pool_legacy,
    "col2im-legacy": col2im_legacy,
    "chunk-0.5m": _chunk(0.5),
    "chunk-1m": _chunk(1),
    "chunk-4m": _chunk(4),
    "chunk-8m": _chunk(8),
}
