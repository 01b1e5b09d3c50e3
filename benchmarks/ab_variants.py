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


# -- convolution with the bias added after the product (before: a ones column of the patches) ------------
def _legacy_conv_forward(self, x, training=False, mask=None):
    xpad = K.pad(self._image(x), self._pads)
    n, c = xpad.shape[0], xpad.shape[3]
    rows, width = self._out[0] * self._out[1], self._k[0] * self._k[1] * c
    if self._k == (1, 1) and self._s == (1, 1):
        cols, per, buf = xpad.reshape(-1, c), n, None  # already the patch matrix (a view when contiguous)
    else:
        per = max(
            1,
            min(
                n,
                (conv_mod._TRAINING_CHUNK_BYTES if training else conv_mod._INFERENCE_CHUNK_BYTES)
                // (rows * width * x.dtype.itemsize),
            ),
        )
        if per < n:  # backward rebuilds each chunk's patches from the input
            y = _legacy_conv_forward_chunked(self, xpad, x, per)
            return y, ((None, per, None, xpad, x.shape) if training else None)
        # one chunk: keep its patches for backward; take the buffer the last backward gave back
        buf = self._buffer("_spare", n * rows * width, x.dtype)
        cols = K.im2col(xpad, self._k, self._s, self._d, self._out, out=buf)
    y = cols @ self.params["kernel"].reshape(-1, self.filters)
    if self.use_bias:
        y += self.params["bias"]
    return y.reshape(n, *self._out[2 - self.rank :], self.filters), (cols, per, buf, xpad, x.shape)


def _legacy_conv_forward_chunked(self, xpad, x, per: int):
    """y from the patch matrix of ``per`` samples at a time, so it stays in cache instead of one
    batch-sized matrix (85 MB for the benchmark CNN's 2nd layer at batch 128, 680 MB at 1024 in
    inference); the bias goes onto each chunk's rows while they are in cache."""
    xp = B.xp
    n, c = xpad.shape[0], xpad.shape[3]
    rows = self._out[0] * self._out[1]
    width = self._k[0] * self._k[1] * c
    kernel = self.params["kernel"].reshape(-1, self.filters)
    y = xp.empty((n * rows, self.filters), dtype=x.dtype)
    buf = self._buffer("_scratch", per * rows * width, x.dtype)
    for a in range(0, n, per):
        part = xpad[a : a + per]
        cols = K.im2col(part, self._k, self._s, self._d, self._out, out=buf[: len(part) * rows * width])
        ya = y[a * rows : (a + len(part)) * rows]
        xp.matmul(cols, kernel, out=ya)
        if self.use_bias:
            ya += self.params["bias"]
    return y.reshape(n, *self._out[2 - self.rank :], self.filters)


def _legacy_conv_backward(self, g, cache):
    """Per chunk c of the forward's ``per`` samples: dW += cols_c^T g_c, db += 1^T g_c and
    dx_c = col2im(g_c W^T), while the chunk's patches (rebuilt from the input when the forward kept
    none) and gradient rows are in cache."""
    xp = B.xp
    cols, per, buf, xpad, x_shape = cache
    f, n, c = self.filters, xpad.shape[0], xpad.shape[3]
    g2 = g.reshape(-1, f)
    rows, width = g2.shape[0] // n, self._k[0] * self._k[1] * c
    gk = self.grads["kernel"]
    # with a contiguous gradient (the flat buffer's view) out= writes it in place
    gk2 = gk.reshape(-1, f) if gk.flags.c_contiguous else xp.empty((width, f), dtype=gk.dtype)
    gb = self.grads["bias"] if self.use_bias else None
    want_dx = self.input_grads_needed[0]  # not for the model input
    if want_dx:
        w_t = xp.ascontiguousarray(self.params["kernel"].reshape(-1, f).T)  # (F, KH*KW*C)
        dx = xp.empty(xpad.shape, dtype=g.dtype)
    ones = xp.ones(min(per, n) * rows, dtype=g2.dtype) if gb is not None else None
    scratch = None if cols is not None else self._buffer("_scratch", per * rows * width, xpad.dtype)
    part_k = part_b = None
    for a in range(0, n, per):
        m = min(per, n - a)
        ga = g2[a * rows : (a + m) * rows]
        if scratch is not None:
            cols = K.im2col(xpad[a : a + m], self._k, self._s, self._d, self._out, out=scratch[: m * rows * width])
        if a == 0:
            xp.matmul(cols.T, ga, out=gk2)
        else:
            part_k = xp.matmul(cols.T, ga, out=part_k)
            gk2 += part_k
        if gb is not None:  # a matrix-vector product is several times faster than sum(axis=0)
            if a == 0:
                xp.matmul(ones, ga, out=gb)
            else:
                part_b = xp.matmul(ones[: len(ga)], ga, out=part_b)
                gb += part_b
        if want_dx:
            # one product per chunk, g_c W^T (M, KH*KW*C), into the patch buffer (its patches are used up),
            # then added back through the windows: few large products (many small ones make OpenBLAS's
            # threads wait for each other, measured 8x slower on a busy machine)
            into = buf if buf is not None else scratch
            back = xp.matmul(ga, w_t, out=None if into is None else into[: m * rows * width].reshape(-1, width))
            K.write_windows(dx[a : a + m], back, self._k, self._s, self._d, self._out)
    if not gk.flags.c_contiguous:
        gk[...] = gk2.reshape(gk.shape)
    if buf is not None:
        self._spare = buf  # cols is consumed, so the next forward may overwrite it
    if not want_dx:
        return (None,)
    dx = K.crop(dx, self._pads)
    return (dx if self.rank == 2 else dx[:, 0],)


def conv_bias_legacy(enabled: bool) -> None:
    """Conv1D/Conv2D adding the bias to each chunk's output and db as 1^T g (no ones column)."""
    _swap(conv_mod._Conv, "forward", _legacy_conv_forward, enabled)
    _swap(conv_mod._Conv, "backward", _legacy_conv_backward, enabled)


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


# -- compiled kernels (nnctl/kernels/): the NumPy path against them, and their parallel builds ------------
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


def _kernel_group(module: str, names: tuple[str, ...]):
    """Swap each kernel ``NAME`` of nnctl/kernels/<module>.py for ``NAME_par`` (its ``parallel=True`` build)."""

    def variant(enabled: bool) -> None:
        from nnctl import kernels

        mod = kernels.load(module)
        for name in names:
            _swap(mod, name, getattr(mod, name + "_par"), enabled)

    variant.__doc__ = f"The {module} kernels {', '.join(names)} compiled with parallel=True (prange over the batch)."
    return variant


def _both(*variants):
    def variant(enabled: bool) -> None:
        for v in variants:
            v(enabled)

    return variant


_pool_par = _kernel_group("pool", ("max_pool", "max_pool_index", "max_pool_backward"))
_conv_par = _kernel_group("conv", ("im2col", "col2im", "direct_forward", "direct_backward_input"))


def _direct(width: int, forward: bool):
    name = "_DIRECT_FORWARD_MAX_WIDTH" if forward else "_DIRECT_MAX_WIDTH"

    def variant(enabled: bool) -> None:
        key = (conv_mod, name)
        if enabled and key not in _saved:
            _saved[key] = getattr(conv_mod, name)
            setattr(conv_mod, name, width)
        elif not enabled and key in _saved:
            setattr(conv_mod, name, _saved.pop(key))

    what = "forward" if forward else "backward"
    variant.__doc__ = f"Convolutions with patches up to {width} wide: the compiled direct kernel's {what}."
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
    "pool-par": _pool_par,
    "conv-par": _conv_par,
    "kernels-par": _both(_pool_par, _conv_par),
    "direct-bwd-0": _direct(0, forward=False),
    "direct-fwd-32": _direct(32, forward=True),
    "pool-legacy": pool_legacy,
    "col2im-legacy": col2im_legacy,
    "conv-bias-legacy": conv_bias_legacy,
    "chunk-0.5m": _chunk(0.5),
    "chunk-1m": _chunk(1),
    "chunk-4m": _chunk(4),
    "chunk-8m": _chunk(8),
}
