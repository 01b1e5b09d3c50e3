"""Sliding-window kernels for convolution and pooling on NHWC arrays (N, H, W, C).

A window view is a zero-copy ``as_strided`` view of shape (N, OH, OW, KH, KW, C):
view[n, oh, ow, i, j, c] = x[n, oh*sh + i*dh, ow*sw + j*dw, c]. Reshaping it to
(N*OH*OW, KH*KW*C) is im2col (the only copy), so a convolution is one matrix product with the
(KH*KW*C, F) kernel. Its adjoint, col2im, adds each kernel offset (i, j) back through the same view
of a zero gradient buffer: for a fixed offset no two output pixels touch the same input pixel, so
KH*KW strided additions are exact, with no loop over pixels or samples.

Padding follows Keras/TensorFlow: "same" gives out = ceil(in / stride) with
total = max((out - 1)*stride + (k - 1)*dilation + 1 - in, 0), the extra pixel at the bottom/right.
Everything runs on ``backend.xp`` (NumPy or CuPy).
"""

from __future__ import annotations

from nnctl import backend as B
from nnctl import kernels

# input elements of window-layer inference a process runs on the xp path before it loads Numba (kernels.wanted):
# a one-row predict never pays Numba's import (about 1 s, most of it llvmlite loading LLVM; docs/performance.md)
KERNEL_MIN_INFERENCE = 2**20


def compiled(x, training: bool) -> bool:
    """Whether a window layer's call on ``x`` runs its compiled kernel (nnctl/kernels/): in training always,
    at inference once Numba is loaded or this process's window inference reached KERNEL_MIN_INFERENCE elements."""
    return kernels.wanted("conv", x.size, training, KERNEL_MIN_INFERENCE)


def as_tuple(value, n: int, name: str) -> tuple[int, ...]:
    """An int or a length-n sequence of positive ints as an n-tuple (``kernel_size=3`` -> (3, 3))."""
    vals = (value,) * n if isinstance(value, int) else tuple(value) if isinstance(value, (list, tuple)) else None
    if (
        vals is None
        or len(vals) != n
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in vals)
    ):
        want = "a positive integer" if n == 1 else f"a positive integer or a list of {n} positive integers"
        raise ValueError(f"{name} must be {want}, found {value!r}")
    return vals


def check_padding(padding) -> str:
    mode = str(padding).lower()
    if mode not in ("valid", "same"):
        raise ValueError(f"padding must be 'valid' or 'same', found {padding!r}")
    return mode


def output_size(size: int, k: int, stride: int, dilation: int, padding: str) -> tuple[int, tuple[int, int]]:
    """Output length along one axis and its (before, after) padding; out is 0 when the window does not fit."""
    span = (k - 1) * dilation + 1
    if padding == "same":
        out = -(-size // stride)
        total = max((out - 1) * stride + span - size, 0)
        return out, (total // 2, total - total // 2)
    return ((size - span) // stride + 1 if size >= span else 0), (0, 0)


def _as_strided(a, shape, strides):
    # numpy.lib and cupy.lib both provide stride_tricks.as_strided (byte strides); cupy has no writeable flag
    return B.xp.lib.stride_tricks.as_strided(a, shape=shape, strides=strides)


def pad(x, pads, value: float = 0.0):
    """x (N, H, W, C) padded by pads = ((top, bottom), (left, right)) with ``value``; x itself when pads are 0.

    Only the border is filled, so the interior is written once (no full zeroing pass).
    """
    (t, b), (left, r) = pads
    if not (t or b or left or r):
        return x
    n, h, w, c = x.shape
    out = B.xp.empty((n, h + t + b, w + left + r, c), dtype=x.dtype)
    out[:, :t] = value
    out[:, t + h :] = value
    out[:, t : t + h, :left] = value
    out[:, t : t + h, left + w :] = value
    out[:, t : t + h, left : left + w] = x
    return out


def crop(x, pads):
    """The inverse of ``pad`` for gradients: the interior view of a padded (N, H, W, C) array."""
    (t, b), (left, r) = pads
    if not (t or b or left or r):
        return x
    return x[:, t : x.shape[1] - b, left : x.shape[2] - r]


def windows(x, kernel, strides, dilation, out_hw):
    """Zero-copy (N, OH, OW, KH, KW, C) view of every window of an (already padded) NHWC array."""
    n, _, _, c = x.shape
    sn, sh, sw, sc = x.strides
    (kh, kw), (oh, ow) = kernel, out_hw
    return _as_strided(
        x, (n, oh, ow, kh, kw, c), (sn, sh * strides[0], sw * strides[1], sh * dilation[0], sw * dilation[1], sc)
    )


def im2col(x, kernel, strides, dilation, out_hw, out=None, ones: bool = False, fast: bool | None = None):
    """Patch matrix (N*OH*OW, KH*KW*C) of a padded NHWC array: one copy, into ``out`` (a flat array of
    that size and x's dtype) when given, else a new array (a view for 1x1 stride-1 kernels).

    ``ones`` (with ``out`` of N*OH*OW*(KH*KW*C + 1) elements): the matrix gets a last column of ones, so
    that [patches, 1] @ [W; b] adds the bias inside the product and [patches, 1]^T g gives [dW; db].
    ``fast``: the compiled copy (with ``out``), by default when kernels are active (``compiled``).
    """
    rows, width = x.shape[0] * out_hw[0] * out_hw[1], kernel[0] * kernel[1] * x.shape[3]
    # one compiled pass, each window's C-runs copied in order
    if out is not None and (kernels.active() if fast is None else fast):
        mat = out[: rows * (width + ones)].reshape(rows, width + ones)
        kernels.load("conv").im2col(x, *kernel, *strides, *dilation, *out_hw, mat, ones)
        return mat
    win = windows(x, kernel, strides, dilation, out_hw)
    if out is None:
        return win.reshape(rows, width)
    if not ones:
        out.reshape(win.shape)[...] = win
        return out.reshape(rows, width)
    mat = out.reshape(rows, width + 1)
    _, oh, ow, _, kw, c = win.shape
    row = (width + 1) * out.itemsize
    # the patches' columns of mat as a window-shaped view (explicit strides: a reshape of the column
    # slice could silently copy)
    _as_strided(mat, win.shape, (oh * ow * row, ow * row, row, kw * c * out.itemsize, c * out.itemsize, out.itemsize))[
        ...
    ] = win
    mat[:, width] = 1
    return mat


def offsets(kernel):
    """Kernel offsets (i, j) in row-major order (the order that decides 'first max' on ties)."""
    return [(i, j) for i in range(kernel[0]) for j in range(kernel[1])]


def add_windows(x, cols, kernel, strides, dilation, out_hw) -> None:
    """In place: x (N, Hp, Wp, C) += col2im(cols), the adjoint of ``im2col`` for cols (N*OH*OW, KH*KW*C)."""
    n, c = x.shape[0], x.shape[3]
    win = windows(x, kernel, strides, dilation, out_hw)
    c6 = cols.reshape(n, out_hw[0], out_hw[1], kernel[0], kernel[1], c)
    for i, j in offsets(kernel):
        win[:, :, :, i, j] += c6[:, :, :, i, j]


def write_windows(x, cols, kernel, strides, dilation, out_hw) -> None:
    """x (N, Hp, Wp, C) = col2im(cols), overwriting x: ``add_windows`` into zeros, one pass cheaper.

    With stride 1 the first offset's window view is the block x[:, :OH, :OW], so it is assigned (no
    zeroing pass over it, no read of it); only the rest of x is zeroed before the other offsets add.
    With compiled kernels on, one pass per sample instead (nnctl/kernels/conv.py ``col2im``).
    """
    if kernels.active():
        kernels.load("conv").col2im(
            cols.reshape(x.shape[0] * out_hw[0] * out_hw[1], -1), *kernel, *strides, *dilation, *out_hw, x
        )
        return
    if tuple(strides) != (1, 1):
        x[...] = 0
        add_windows(x, cols, kernel, strides, dilation, out_hw)
        return
    n, c = x.shape[0], x.shape[3]
    (oh, ow), (kh, kw) = out_hw, kernel
    c6 = cols.reshape(n, oh, ow, kh, kw, c)
    x[:, oh:] = 0
    x[:, :oh, ow:] = 0
    x[:, :oh, :ow] = c6[:, :, :, 0, 0]
    win = windows(x, kernel, strides, dilation, out_hw)
    for i, j in offsets(kernel)[1:]:
        win[:, :, :, i, j] += c6[:, :, :, i, j]


def col2im(cols, padded_shape, kernel, strides, dilation, out_hw):
    """Adjoint of ``im2col``: cols (N*OH*OW, KH*KW*C) summed back into a zero (N, Hp, Wp, C) array."""
    dx = B.xp.zeros(padded_shape, dtype=cols.dtype)
    add_windows(dx, cols, kernel, strides, dilation, out_hw)
    return dx
