"""Kernels of the activations added for Keras parity (selu, relu6, mish, hard_sigmoid, hard_silu, softsign,
exponential, log_softmax, exact gelu), as forward(x) and backward(x, y, dy) = f'(x) * dy.

The exact gelu needs the normal CDF Phi(x) = erfc(-x / sqrt 2) / 2, and neither NumPy nor CuPy's core
has erf, so ``erfc`` is a Chebyshev series of our own: for z >= 0, t = 2 / (2 + z) maps [0, inf) onto
(0, 1] and erfc(z) = t exp(-z^2 + f(2t - 1)) with f smooth on [-1, 1]; its 29 coefficients are
interpolated once on the host from ``math.erfc`` (relative error below 1e-14 where erfc > 1e-300).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from nnctl import backend as B

SELU_ALPHA = 1.6732632423543772848170429916717  # Klambauer et al. 2017, as Keras
SELU_SCALE = 1.0507009873554804934193349852946
_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_ERFC_DEGREE = 28  # coefficients fall to the float64 noise floor (about 1e-15) by degree 25


def _erfcx(z: float) -> float:
    """exp(z^2) erfc(z) on the host for z >= 0: math.erfc while exp(z^2) is finite, then the asymptotic series."""
    if z <= 25:
        return math.erfc(z) * math.exp(z * z)
    total, term = 1.0, 1.0
    for k in range(1, 10):  # terms shrink by (2k-1) / (2 z^2) <= 1/70: ten reach 1e-17
        term *= -(2 * k - 1) / (2 * z * z)
        total += term
    return total / (z * math.sqrt(math.pi))


@functools.cache
def _erfc_coefficients() -> tuple[float, ...]:
    def f(u):
        t = (1 + u) / 2
        return np.array([math.log(_erfcx(2 / tt - 2)) for tt in t]) - np.log(t)

    return tuple(float(c) for c in np.polynomial.chebyshev.chebinterpolate(f, _ERFC_DEGREE))


def erfc_nonnegative(z):
    """erfc(z) for z >= 0 on the array module of z (Clenshaw's recurrence for the Chebyshev series)."""
    xp = B.xp
    c = _erfc_coefficients()
    t = 2 / (2 + z)
    u2 = 2 * (2 * t - 1)
    b1, b2, nxt = xp.zeros_like(z), xp.zeros_like(z), xp.empty_like(z)
    for ck in c[:0:-1]:  # b_k = c_k + 2u b_{k+1} - b_{k+2}, in three rotating buffers (no temporaries)
        xp.multiply(u2, b1, out=nxt)
        nxt -= b2
        nxt += ck
        b1, b2, nxt = nxt, b1, b2
    return t * xp.exp(0.5 * u2 * b1 - b2 + c[0] - z * z)


def normal_cdf(x):
    """Phi(x) = erfc(-x / sqrt 2) / 2, from the small tail on each side (no cancellation for x < 0)."""
    tail = 0.5 * erfc_nonnegative(B.xp.abs(x) * _SQRT_HALF)
    return B.xp.where(x >= 0, 1 - tail, tail)


def gelu(x):
    return x * normal_cdf(x)


def gelu_backward(x, y, dy):
    return dy * (normal_cdf(x) + x * _INV_SQRT_2PI * B.xp.exp(-0.5 * x * x))


def selu(x):
    xp = B.xp
    return SELU_SCALE * xp.where(x > 0, x, SELU_ALPHA * xp.expm1(xp.minimum(x, 0)))


def selu_backward(x, y, dy):
    return B.xp.where(x > 0, SELU_SCALE * dy, dy * (y + SELU_SCALE * SELU_ALPHA))


def relu6(x):
    return B.xp.clip(x, 0, 6)


def relu6_backward(x, y, dy):
    return dy * ((x > 0) & (x < 6))


def hard_sigmoid(x):
    return B.xp.clip(x + 3, 0, 6) * (1 / 6)


def hard_sigmoid_backward(x, y, dy):
    return dy * ((x > -3) & (x < 3)) * (1 / 6)


def hard_silu(x):
    return x * hard_sigmoid(x)


def hard_silu_backward(x, y, dy):
    return dy * (hard_sigmoid(x) + x * ((x > -3) & (x < 3)) * (1 / 6))


def _sigmoid(x):
    return 0.5 * (1 + B.xp.tanh(0.5 * x))  # an identity that never overflows


def mish(x):
    return x * B.xp.tanh(B.xp.logaddexp(x, 0))


def mish_backward(x, y, dy):
    t = B.xp.tanh(B.xp.logaddexp(x, 0))
    return dy * (t + x * _sigmoid(x) * (1 - t * t))


def softsign(x):
    return x / (1 + B.xp.abs(x))


def softsign_backward(x, y, dy):
    d = 1 + B.xp.abs(x)
    return dy / (d * d)


def log_softmax(x):
    xp = B.xp
    z = x - x.max(axis=-1, keepdims=True)
    return z - xp.log(xp.exp(z).sum(axis=-1, keepdims=True))


def log_softmax_backward(x, y, dy):
    return dy - B.xp.exp(y) * dy.sum(axis=-1, keepdims=True)
