"""Recurrent time steps as compiled loops: one call does a step's elementwise work, forward or backward; the
step's recurrent product stays in BLAS (``np.matmul`` from rnn_cells.run/run_back, between the calls).

Layouts are those of nnctl/layers/rnn_cells.py: ``Z`` (T, G, N, U) block-major, x_t W + b with the sigmoid
blocks pre-scaled by 0.5 (so sigmoid(z) = 0.5 + 0.5 tanh(z / 2) is one tanh); ``Q`` (N, G*U) the step's
product h_{t-1} Rk with the same scaled columns; ``H``, ``C`` (T+1, N, U); ``Mb`` (T, N) bool, True = a real
step, or a (0, 0) array for no mask. A forward step overwrites Z[t] with the gate activations (the tape's
``A``); a backward step reads them and writes dZ[t] (N, G*U), the gradient of the unscaled x_t W + b (and GRU's
dRec[t], of h R + b_rec), row-major, the layout the next product dZ[t] R^T reads.

The backward carries dh between steps as dh_{t-1} = P + K * dh_t, with P = dRec[t] R^T from BLAS and K (N, U)
written by step t: 0 on real LSTM/SimpleRNN rows, z on real GRU rows, 1 on masked rows (whose gradients pass
through unchanged); ``carry`` applies the last one after the loop.

Only the default activations have kernels (tanh, and sigmoid as the recurrent activation): other choices run
the xp path. float32 tanh is a rational approximation (Eigen's, clamped at |x| = 7.905, where float32 tanh
rounds to +-1) that LLVM vectorises; NumPy's own float32 tanh is SIMD, and Numba's scalar libm call is 30x
slower than it (measured, docs/performance.md "Compiled recurrent kernels"). Its error is 2.4e-7 at most
(2 ulp of 1), against 6e-8 for NumPy's. float64 uses libm's tanh (exact to rounding: the float64 tests and
references hold to 1e-12). ``error_model="numpy"`` drops Python's zero-division check, which otherwise keeps
the loops scalar.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
from numba import types
from numba.extending import overload

from nnctl.kernels import JIT_OPTIONS

_JIT: Any = dict(JIT_OPTIONS, error_model="numpy")

_CLAMP = 7.90531110763549805  # float32 tanh is +-1 beyond this


def tanh(x):
    """tanh(x) in x's precision (the compiled form is chosen per dtype; see the module doc)."""
    return np.tanh(x)


@overload(tanh, jit_options=_JIT)
def _tanh_impl(x):
    if x == types.float32:
        lo, hi = np.float32(-_CLAMP), np.float32(_CLAMP)
        a1, a3, a5 = (
            np.float32(4.89352455891786e-03),
            np.float32(6.37261928875436e-04),
            np.float32(1.48572235717979e-05),
        )
        a7, a9 = np.float32(5.12229709037114e-08), np.float32(-8.60467152213735e-11)
        a11, a13 = np.float32(2.00018790482477e-13), np.float32(-2.76076847742355e-16)
        b0, b2 = np.float32(4.89352518554385e-03), np.float32(2.26843463243900e-03)
        b4, b6 = np.float32(1.18534705686654e-04), np.float32(1.19825839466702e-06)

        def tanh32(x):
            v = hi if x > hi else x  # a NaN fails both tests and propagates
            v = lo if v < lo else v
            x2 = v * v
            p = ((((((a13 * x2 + a11) * x2 + a9) * x2 + a7) * x2 + a5) * x2 + a3) * x2 + a1) * v
            q = ((b6 * x2 + b4) * x2 + b2) * x2 + b0
            return p / q

        return tanh32
    return lambda x: math.tanh(x)


# Every loop below runs over one row's contiguous (U,) slices: LLVM vectorises a unit-stride loop over
# 1-D slices, but not the same loop written with 3-D/4-D indices (runtime alias checks give up); measured
# 5.1 against 12.4 us for the LSTM backward step at N = U = 64.


@numba.njit(**_JIT)
def lstm_step(t, Z, Q, H, C, TC, Mb):
    """LSTM forward step t: gates i, f, g, o from Z[t] + Q (sigmoid as 0.5 + 0.5 tanh of the scaled z),
    c_t = f c_{t-1} + i g, TC[t] = tanh(c_t), h_t = o tanh(c_t); masked rows keep h_{t-1}, c_{t-1}."""
    N, U = H.shape[1], H.shape[2]
    masked = Mb.shape[0] > 0
    half = Z.dtype.type(0.5)
    for n in range(N):
        zi, zf, zg, zo, q = Z[t, 0, n], Z[t, 1, n], Z[t, 2, n], Z[t, 3, n], Q[n]
        cp, c1, tcn, h1 = C[t, n], C[t + 1, n], TC[t, n], H[t + 1, n]
        for u in range(U):
            i = half * tanh(zi[u] + q[u]) + half
            f = half * tanh(zf[u] + q[U + u]) + half
            g = tanh(zg[u] + q[2 * U + u])
            o = half * tanh(zo[u] + q[3 * U + u]) + half
            zi[u] = i
            zf[u] = f
            zg[u] = g
            zo[u] = o
            c = f * cp[u] + i * g
            tc = tanh(c)
            tcn[u] = tc
            c1[u] = c
            h1[u] = o * tc
        if masked and not Mb[t, n]:
            c1[:] = cp
            h1[:] = H[t, n]


@numba.njit(**_JIT)
def gru_step(t, Z, Q, brec, HR, H, Mb):
    """GRU forward step t (reset_after): HR[t] = Q + brec by block, z, r = sigmoid(Z[t] + HR[t]) (scaled),
    hh = tanh(Z[t, 2] + r HR[t, 2]), h_t = z h_{t-1} + (1 - z) hh; masked rows keep h_{t-1}."""
    N, U = H.shape[1], H.shape[2]
    masked = Mb.shape[0] > 0
    half = Z.dtype.type(0.5)
    b0, b1, b2 = brec[0], brec[1], brec[2]
    for n in range(N):
        zz, zr, zh, q = Z[t, 0, n], Z[t, 1, n], Z[t, 2, n], Q[n]
        hr0, hr1, hr2, hp, h1 = HR[t, 0, n], HR[t, 1, n], HR[t, 2, n], H[t, n], H[t + 1, n]
        for u in range(U):
            r0 = q[u] + b0[u]
            r1 = q[U + u] + b1[u]
            r2 = q[2 * U + u] + b2[u]
            hr0[u] = r0
            hr1[u] = r1
            hr2[u] = r2
            z = half * tanh(zz[u] + r0) + half
            r = half * tanh(zr[u] + r1) + half
            hh = tanh(zh[u] + r * r2)
            zz[u] = z
            zr[u] = r
            zh[u] = hh
            h1[u] = (hp[u] - hh) * z + hh
        if masked and not Mb[t, n]:
            h1[:] = hp


@numba.njit(**_JIT)
def rnn_step(t, Z, Q, H, Mb):
    """SimpleRNN forward step t: Z[t, 0] += Q, h_t = tanh(Z[t, 0]); masked rows keep h_{t-1}."""
    N, U = H.shape[1], H.shape[2]
    masked = Mb.shape[0] > 0
    for n in range(N):
        z, q, h1 = Z[t, 0, n], Q[n], H[t + 1, n]
        for u in range(U):
            v = z[u] + q[u]
            z[u] = v
            h1[u] = tanh(v)
        if masked and not Mb[t, n]:
            h1[:] = H[t, n]


@numba.njit(**_JIT)
def _take(t, first, dh, P, K, dseq):
    """dh = dh_t: the caller's dh at the last step, else P + K dh of step t+1; plus dseq[t] when given."""
    N, U = dh.shape
    seq = dseq.shape[0] > 0
    for n in range(N):
        d, p, k = dh[n], P[n], K[n]
        if not first:
            for u in range(U):
                d[u] = p[u] + k[u] * d[u]
        if seq:
            s = dseq[t, n]
            for u in range(U):
                d[u] += s[u]


@numba.njit(**_JIT)
def lstm_back_step(t, first, dh, dc, P, K, dseq, A, C, TC, Mb, dZ):
    """LSTM backward step t: with d = dh_t (``_take``), dc += d o (1 - tc^2); dz_i = dc g i (1 - i),
    dz_f = dc c_{t-1} f (1 - f), dz_g = dc i (1 - g^2), dz_o = d tc o (1 - o) into dZ[t]; dc_{t-1} = dc f.
    Masked rows: dz = 0, dc passes, K = 1 (else 0)."""
    _take(t, first, dh, P, K, dseq)
    N, U = dh.shape
    masked = Mb.shape[0] > 0
    one, zero = dh.dtype.type(1), dh.dtype.type(0)
    for n in range(N):
        dz, k = dZ[t, n], K[n]
        if masked and not Mb[t, n]:
            dz[:] = zero
            k[:] = one
            continue
        ai, af, ag, ao = A[t, 0, n], A[t, 1, n], A[t, 2, n], A[t, 3, n]
        tcn, cp, d, dcn = TC[t, n], C[t, n], dh[n], dc[n]
        dzi, dzf, dzg, dzo = dz[:U], dz[U : 2 * U], dz[2 * U : 3 * U], dz[3 * U :]
        for u in range(U):
            i, f, g, o, tc, du = ai[u], af[u], ag[u], ao[u], tcn[u], d[u]
            c = dcn[u] + du * o * (one - tc * tc)
            dzi[u] = c * g * i * (one - i)
            dzf[u] = c * cp[u] * f * (one - f)
            dzg[u] = c * i * (one - g * g)
            dzo[u] = du * tc * o * (one - o)
            dcn[u] = c * f
            k[u] = zero


@numba.njit(**_JIT)
def gru_back_step(t, first, dh, P, K, dseq, A, HR, H, Mb, dZ, dRec):
    """GRU backward step t: with d = dh_t, dz_h = d (1 - z)(1 - hh^2) into dZ[t] (block h), dRec_h = dz_h r,
    dz_z = dRec_z = d (h_{t-1} - hh) z (1 - z), dz_r = dRec_r = dz_h HR[t, 2] r (1 - r); K = z.
    Masked rows: zeros, K = 1."""
    _take(t, first, dh, P, K, dseq)
    N, U = dh.shape
    masked = Mb.shape[0] > 0
    one, zero = dh.dtype.type(1), dh.dtype.type(0)
    for n in range(N):
        dz, dr_, k = dZ[t, n], dRec[t, n], K[n]
        if masked and not Mb[t, n]:
            dz[:] = zero
            dr_[:] = zero
            k[:] = one
            continue
        az, ar, ah, hr2, hp, d = A[t, 0, n], A[t, 1, n], A[t, 2, n], HR[t, 2, n], H[t, n], dh[n]
        dzz, dzr, dzh = dz[:U], dz[U : 2 * U], dz[2 * U :]
        drz, drr, drh = dr_[:U], dr_[U : 2 * U], dr_[2 * U :]
        for u in range(U):
            z, r, hh, du = az[u], ar[u], ah[u], d[u]
            dxh = du * (one - z) * (one - hh * hh)
            gz = du * (hp[u] - hh) * z * (one - z)
            gr = dxh * hr2[u] * r * (one - r)
            dzz[u] = gz
            dzr[u] = gr
            dzh[u] = dxh
            drz[u] = gz
            drr[u] = gr
            drh[u] = dxh * r
            k[u] = z


@numba.njit(**_JIT)
def rnn_back_step(t, first, dh, P, K, dseq, H, Mb, dZ):
    """SimpleRNN backward step t: dz = d (1 - h_t^2) into dZ[t]; masked rows: dz = 0, K = 1 (else 0)."""
    _take(t, first, dh, P, K, dseq)
    N, U = dh.shape
    masked = Mb.shape[0] > 0
    one, zero = dh.dtype.type(1), dh.dtype.type(0)
    for n in range(N):
        dz, k = dZ[t, n], K[n]
        if masked and not Mb[t, n]:
            dz[:] = zero
            k[:] = one
            continue
        h1, d = H[t + 1, n], dh[n]
        for u in range(U):
            h = h1[u]
            dz[u] = d[u] * (one - h * h)
            k[u] = zero


@numba.njit(**_JIT)
def carry(dh, P, K):
    """dh = P + K dh: dh_{t-1} from step t's product and carry (after the loop's last step, t = 0)."""
    N, U = dh.shape
    for n in range(N):
        d, p, k = dh[n], P[n], K[n]
        for u in range(U):
            d[u] = p[u] + k[u] * d[u]
