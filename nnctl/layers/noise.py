"""Regularisation noise: SpatialDropout1D/2D, GaussianNoise and GaussianDropout (identity in inference).

Every draw comes from the layer's own generator on the host, first axis the batch (so a
data-parallel RowShare draws the global batch's rows, as Dropout's do), and is moved to the device.
"""

from __future__ import annotations

import math

import numpy as np

from nnctl import backend as B
from nnctl.fields import NonNegativeFloat, Rate
from nnctl.layers.base import CHANNELS_LAST, Layer, expect_input, register


def _check_rate(rate, name: str = "rate") -> None:
    ok = isinstance(rate, (int, float)) and not isinstance(rate, bool) and 0 <= rate < 1
    if not ok:
        raise ValueError(f"{name} must be a number in [0, 1), found {rate!r}")


class _SpatialDropout(Layer):
    """Inverted dropout of whole channels: m[n, c] ~ Bernoulli(1 - rate) shared by every position of sample n,
    y = x * m / (1 - rate) in training, x in inference."""

    rank = 2

    def __init__(self, rate: Rate, **kw):
        super().__init__(**kw)
        self.rate = rate

    def build(self, input_shapes, ctx):
        shape = input_shapes[0]
        expect_input(self, shape, CHANNELS_LAST[self.rank])
        _check_rate(self.rate)
        return shape

    def forward(self, x, training=False, mask=None):
        if not training or self.rate == 0:
            return x, None
        n, c = x.shape[0], x.shape[-1]
        keep = B.asarray(self.rng.random((n, c), dtype=np.float32) >= self.rate)
        m = keep.astype(x.dtype).reshape(n, *(1,) * self.rank, c) * x.dtype.type(1.0 / (1.0 - self.rate))
        return x * m, m

    def backward(self, g, m):
        return (g if m is None else g * m,)


@register()
class SpatialDropout1D(_SpatialDropout):
    """Drop whole feature channels of a sequence: y[n,t,c] = x[n,t,c] m[n,c] / (1 - rate); (N, T, C) -> (N, T, C)."""

    rank = 1


@register()
class SpatialDropout2D(_SpatialDropout):
    """Drop whole feature maps: y[n,h,w,c] = x[n,h,w,c] m[n,c] / (1 - rate); (N, H, W, C) -> (N, H, W, C)."""

    rank = 2


@register()
class GaussianNoise(Layer):
    """Additive Gaussian noise in training: y = x + stddev * e, e ~ N(0, 1); y = x in inference; any shape."""

    def __init__(self, stddev: NonNegativeFloat, **kw):
        super().__init__(**kw)
        self.stddev = stddev

    def build(self, input_shapes, ctx):
        if not isinstance(self.stddev, (int, float)) or isinstance(self.stddev, bool) or self.stddev < 0:
            raise ValueError(f"stddev must be a non-negative number, found {self.stddev!r}")
        return input_shapes[0]

    def forward(self, x, training=False, mask=None):
        if not training or self.stddev == 0:
            return x, None
        e = B.asarray(self.rng.standard_normal(x.shape, dtype=np.float32), dtype=x.dtype)
        return x + self.stddev * e, None

    def backward(self, g, cache):
        return (g,)


@register()
class GaussianDropout(Layer):
    """Multiplicative Gaussian noise in training: y = x * e, e ~ N(1, rate / (1 - rate)); y = x in inference;
    any shape."""

    def __init__(self, rate: Rate, **kw):
        super().__init__(**kw)
        self.rate = rate

    def build(self, input_shapes, ctx):
        _check_rate(self.rate)
        return input_shapes[0]

    def forward(self, x, training=False, mask=None):
        if not training or self.rate == 0:
            return x, None
        std = math.sqrt(self.rate / (1.0 - self.rate))
        e = B.asarray(self.rng.standard_normal(x.shape, dtype=np.float32), dtype=x.dtype)
        e *= std
        e += 1
        return x * e, e

    def backward(self, g, e):
        return (g if e is None else g * e,)
