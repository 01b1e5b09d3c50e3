"""Convolution as compiled loops: im2col and col2im in one pass each, and the direct convolution's adjoints
(kernel/bias gradient, input gradient) for layers whose patch is narrow (a first layer's 9 values), where
[cols, 1]^T g is a poor matrix product and the patch copy costs more than the arithmetic.

Arrays are NHWC and already padded: x (N, Hp, Wp, C), the kernel w (KH, KW, C, F), the bias b (F,), the
output or its gradient (N, OH, OW, F); strides (sh, sw), dilation (dh, dw). The window of output pixel
(p, q) reads x[n, p*sh + i*dh, q*sw + j*dw, c]. Every loop keeps the channel or filter axis innermost and
contiguous, so it runs as SIMD without reassociating any sum (no fastmath): the results equal the NumPy
path's within float32 rounding (tests/test_kernels_conv.py).

Each kernel runs on one thread; a layer runs them over slices of the batch side by side (nnctl/threads.py).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from nnctl.kernels import JIT_OPTIONS


def _im2col(x, kh, kw, sh, sw, dh, dw, oh, ow, out, ones):
    """out (N*OH*OW, KH*KW*C [+1]) = the patch matrix of x, row (n*OH + p)*OW + q, column (i*KW + j)*C + c;
    with ``ones`` a last column of ones (the bias row of the kernel matrix)."""
    n, c = x.shape[0], x.shape[3]
    width = kh * kw * c
    for b in range(n):
        for p in range(oh):
            for q in range(ow):
                r = (b * oh + p) * ow + q
                for i in range(kh):
                    for j in range(kw):
                        base = (i * kw + j) * c
                        for ch in range(c):
                            out[r, base + ch] = x[b, p * sh + i * dh, q * sw + j * dw, ch]
                if ones:
                    out[r, width] = 1


def _col2im(cols, kh, kw, sh, sw, dh, dw, oh, ow, dx):
    """dx (N, Hp, Wp, C) = col2im(cols), overwritten: each sample's dx zeroed while in cache, then the
    patch columns of one kernel offset after another added back at their pixels (the adjoint of
    ``_im2col``). The offsets go in the xp path's order (``nnctl.ops.im2col.write_windows``), so every
    pixel's sum is formed in the same order: the result is the xp path's, bit for bit."""
    n, c = dx.shape[0], dx.shape[3]
    for b in range(n):
        dx[b] = 0
        for i in range(kh):
            for j in range(kw):
                base = (i * kw + j) * c
                for p in range(oh):
                    for q in range(ow):
                        r = (b * oh + p) * ow + q
                        for ch in range(c):
                            dx[b, p * sh + i * dh, q * sw + j * dw, ch] += cols[r, base + ch]


def _direct_backward_params(x, g, y, relu, sh, sw, dh, dw, gw, gb, use_bias):
    """gw[i,j,c,:] = sum_{n,p,q} x[n, p*sh+i*dh, q*sw+j*dw, c] g[n,p,q,:] and gb = sum_{n,p,q} g[n,p,q,:],
    overwritten, with g read as g * (y > 0) when ``relu`` (the fused ReLU's derivative); each sample's sum
    is formed in a small buffer (in L1) and then added to the total, which keeps the float32 rounding of
    a long sum near that of a blocked matrix product."""
    n, oh, ow, f = g.shape
    kh, kw, c = gw.shape[0], gw.shape[1], gw.shape[2]
    kk = kh * kw * c
    part = np.zeros((kk, f), dtype=gw.dtype)
    part_b = np.zeros(f, dtype=gw.dtype)
    gm = np.empty(f, dtype=g.dtype)
    xv = np.empty(kk, dtype=x.dtype)
    total = gw.reshape(kk, f)
    total[...] = 0
    if use_bias:
        gb[...] = 0
    for b in range(n):
        part[...] = 0
        part_b[:] = 0
        for p in range(oh):
            for q in range(ow):
                gr = g[b, p, q]
                if relu:
                    yr = y[b, p, q]
                    for k in range(f):
                        gm[k] = gr[k] if yr[k] > 0 else 0
                else:
                    for k in range(f):
                        gm[k] = gr[k]
                if use_bias:
                    for k in range(f):
                        part_b[k] += gm[k]
                t = 0
                for i in range(kh):
                    for j in range(kw):
                        for ch in range(c):
                            xv[t] = x[b, p * sh + i * dh, q * sw + j * dw, ch]
                            t += 1
                for t in range(kk):
                    v = xv[t]
                    for k in range(f):
                        part[t, k] += v * gm[k]
        total += part
        if use_bias:
            gb += part_b


def _direct_backward_input(g, y, relu, w, sh, sw, dh, dw, dx):
    """dx (N, Hp, Wp, C) = sum over windows of g[n,p,q,:] . w[i,j,c,:] at x's pixel, overwritten; g read
    as g * (y > 0) when ``relu``."""
    n, oh, ow, f = g.shape
    kh, kw, c = w.shape[0], w.shape[1], w.shape[2]
    for b in range(n):
        dx[b] = 0
        gm = np.empty(f, dtype=g.dtype)
        for p in range(oh):
            for q in range(ow):
                gr = g[b, p, q]
                if relu:
                    yr = y[b, p, q]
                    for k in range(f):
                        gm[k] = gr[k] if yr[k] > 0 else 0
                    gr = gm
                for i in range(kh):
                    for j in range(kw):
                        for ch in range(c):
                            wr = w[i, j, ch]
                            s = 0.0
                            for k in range(f):
                                s += gr[k] * wr[k]
                            dx[b, p * sh + i * dh, q * sw + j * dw, ch] += s


im2col = numba.njit(**JIT_OPTIONS)(_im2col)
col2im = numba.njit(**JIT_OPTIONS)(_col2im)
# the direct kernels' multiply-adds may compile as FMAs (one rounding instead of two: within float32 rounding)
_FMA: Any = {"fastmath": {"contract"}}
direct_backward_params = numba.njit(**_FMA, **JIT_OPTIONS)(_direct_backward_params)
direct_backward_input = numba.njit(**JIT_OPTIONS)(_direct_backward_input)
