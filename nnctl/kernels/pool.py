"""Max pooling as compiled loops: one pass over each window for the maximum and its first-maximum index,
one pass that writes the input gradient through that index.

Arrays are NHWC: xpad (N, Hp, Wp, C) already padded (with -inf for "same"), y and idx (N, OH, OW, C),
window (PH, PW), strides (sh, sw). Offset k = i*PW + j in row-major window order; the index moves only
on a strictly greater value, so ties keep the first maximum, and a NaN propagates to y as
``numpy.maximum`` does without moving the index: the same y and idx as ``nnctl.layers.pool._window_max``.
The xp path makes PH*PW passes over the map per direction (plus three int8 passes per offset for the
index); these make one, with each sample's window rows in cache.

Each kernel runs on one thread; the layer runs it over slices of the batch side by side (nnctl/threads.py).
"""

from __future__ import annotations

import numba

from nnctl.kernels import JIT_OPTIONS


def _max_pool(x, ph, pw, sh, sw, y, idx, want_index):
    """y[n,p,q,c] = max_{i<PH, j<PW} x[n, p*sh+i, q*sw+j, c] (NaN propagates, as ``numpy.maximum``), and with
    ``want_index`` idx[n,p,q,c] = the row-major offset of the window's first maximum (idx unread without)."""
    n, oh, ow, c = y.shape
    for b in range(n):
        for p in range(oh):
            for q in range(ow):
                r0, c0 = p * sh, q * sw
                for ch in range(c):
                    y[b, p, q, ch] = x[b, r0, c0, ch]
                    if want_index:
                        idx[b, p, q, ch] = 0
                for i in range(ph):
                    for j in range(pw):
                        if i == 0 and j == 0:
                            continue
                        k = i * pw + j
                        for ch in range(c):
                            v = x[b, r0 + i, c0 + j, ch]
                            if v > y[b, p, q, ch]:  # strictly greater: a tie keeps the earlier offset
                                y[b, p, q, ch] = v
                                if want_index:
                                    idx[b, p, q, ch] = k
                            elif v != v:  # NaN: y becomes NaN, the index stays (as the xp path)
                                y[b, p, q, ch] = v


def _max_pool_backward(g, idx, ph, pw, sh, sw, dx, tiled):
    """dx (N, Hp, Wp, C) = the adjoint of max pooling: g[n,p,q,c] added at the window's first maximum.

    ``tiled`` (stride = window, windows cover dx exactly): every dx element is written once, g or 0;
    otherwise each sample's dx is zeroed (while it is in cache) and the gradients are added, so a pixel
    that is first maximum of several overlapping windows gathers all of them, in the xp path's order
    (the same bits).
    """
    n, oh, ow, c = g.shape
    for b in range(n):
        if tiled:
            for p in range(oh):
                for q in range(ow):
                    for i in range(ph):
                        for j in range(pw):
                            k = i * pw + j
                            for ch in range(c):
                                dx[b, p * sh + i, q * sw + j, ch] = g[b, p, q, ch] if idx[b, p, q, ch] == k else 0
        else:
            dx[b] = 0
            # offset after offset, as the xp path adds them: a pixel's sum is formed in the same order
            for i in range(ph):
                for j in range(pw):
                    k = i * pw + j
                    for p in range(oh):
                        for q in range(ow):
                            for ch in range(c):
                                if idx[b, p, q, ch] == k:
                                    dx[b, p * sh + i, q * sw + j, ch] += g[b, p, q, ch]


max_pool = numba.njit(**JIT_OPTIONS)(_max_pool)
max_pool_backward = numba.njit(**JIT_OPTIONS)(_max_pool_backward)
