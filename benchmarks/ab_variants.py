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
from nnctl import graph as graph_mod
from nnctl import threads
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


# -- compiled kernels (nnctl/kernels/): the NumPy path against them ------------
def kernels_off(enabled: bool) -> None:
    """Every compiled kernel off (B = the NumPy path, A = the kernels)."""
    from nnctl import kernels

    kernels.use_kernels(not enabled)


class _NoKernels:
    """A stand-in for nnctl.kernels in one module: that module's call sites take their xp path."""

    @staticmethod
    def active() -> bool:
        return False


def _xp_in(module, what: str):
    def variant(enabled: bool) -> None:
        _swap(module, "kernels", _NoKernels, enabled)

    variant.__doc__ = f"The {what} kernels off (their xp code), the other kernels on."
    return variant


def _direct(width: int):
    def variant(enabled: bool) -> None:
        key = (conv_mod, "_DIRECT_MAX_WIDTH")
        if enabled and key not in _saved:
            _saved[key] = conv_mod._DIRECT_MAX_WIDTH
            conv_mod._DIRECT_MAX_WIDTH = width
        elif not enabled and key in _saved:
            conv_mod._DIRECT_MAX_WIDTH = _saved.pop(key)

    variant.__doc__ = f"Convolutions with patches up to {width} wide: the compiled direct kernel's backward."
    return variant


# -- nnctl/threads.py: the slices of a layer's batch work side by side, or one after another ---------------
def _workers(count: int):
    def variant(enabled: bool) -> None:
        threads.set_workers(count if enabled else None)

    variant.__doc__ = f"The slice pool (nnctl/threads.py) with {count} worker(s)."
    return variant


# -- the ReLU fused into the convolution (Model._fuse) off: the ReLU node runs on its own ------------------
def _unfused_forward(self, x, training=False, until=None):
    fused, self._relu_fused = self._relu_fused, set()
    try:
        return _saved[(graph_mod.Model, "forward")](self, x, training=training, until=until)
    finally:
        self._relu_fused = fused


def relu_unfused(enabled: bool) -> None:
    """The ReLU after a convolution as its own node in training (no ``relu_fused``)."""
    # a property on the class (a data descriptor) hides the instance flag the fusion pass set
    _swap(conv_mod._Conv, "relu_fused", property(lambda self: False, lambda self, v: None), enabled)
    _swap(graph_mod.Model, "forward", _unfused_forward, enabled)


VARIANTS = {
    "relu-unfused": relu_unfused,
    "kernels-off": kernels_off,
    "pool-xp": _xp_in(pool_mod, "max-pool"),
    "im2col-xp": _xp_in(K, "im2col and col2im"),
    "direct-bwd-0": _direct(0),
    "threads-1": _workers(1),
    "pool-legacy": pool_legacy,
    "col2im-legacy": col2im_legacy,
    "chunk-0.5m": _chunk(0.5),
    "chunk-1m": _chunk(1),
    "chunk-4m": _chunk(4),
    "chunk-8m": _chunk(8),
}
