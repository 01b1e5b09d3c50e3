"""Keras's activation layers: ReLU, LeakyReLU, PReLU, ELU, Softmax (each also an ``activation =`` name).

Elementwise on any input shape (softmax over ``axis``); PReLU learns its negative slope.
"""

from __future__ import annotations

from nnctl import backend as B
from nnctl import initializers
from nnctl.fields import NonNegativeFloat, PositiveInt
from nnctl.initializers import InitializerName
from nnctl.layers.base import Layer, register
from nnctl.ops.activations import _softmax, _softmax_backward


@register()
class ReLU(Layer):
    """Rectified linear unit with Keras's options.

    y = min(x, max_value) for x >= threshold, negative_slope * (x - threshold) below it;
    dy/dx = 1 on [threshold, max_value), negative_slope below threshold, 0 above max_value.
    """

    def __init__(
        self,
        max_value: NonNegativeFloat | None = None,
        negative_slope: NonNegativeFloat = 0.0,
        threshold: float = 0.0,
        **kw,
    ):
        super().__init__(**kw)
        self.max_value, self.negative_slope, self.threshold = max_value, negative_slope, threshold

    def forward(self, x, training=False, mask=None):
        xp = B.xp
        below = x < self.threshold
        y = xp.where(below, self.negative_slope * (x - self.threshold), x).astype(x.dtype)
        if self.max_value is not None:
            y = xp.minimum(y, x.dtype.type(self.max_value))
        return y, x

    def backward(self, g, x):
        xp = B.xp
        d = xp.where(x < self.threshold, g.dtype.type(self.negative_slope), g.dtype.type(1.0))
        if self.max_value is not None:
            d = d * (x < self.max_value)
        return (g * d,)


@register()
class LeakyReLU(Layer):
    """y = x for x > 0, negative_slope * x otherwise (Keras 3's default slope 0.3; ``alpha`` is Keras 2's name)."""

    def __init__(self, negative_slope: NonNegativeFloat = 0.3, alpha: NonNegativeFloat | None = None, **kw):
        super().__init__(**kw)
        self.negative_slope = negative_slope if alpha is None else alpha
        self.alpha = None  # folded into negative_slope

    def forward(self, x, training=False, mask=None):
        return B.xp.where(x > 0, x, self.negative_slope * x).astype(x.dtype), x

    def backward(self, g, x):
        return (B.xp.where(x > 0, g, self.negative_slope * g).astype(g.dtype),)


@register()
class ELU(Layer):
    """y = x for x > 0, alpha (exp(x) - 1) otherwise; dy/dx = 1 or y + alpha."""

    def __init__(self, alpha: float = 1.0, **kw):
        super().__init__(**kw)
        self.alpha = alpha

    def forward(self, x, training=False, mask=None):
        xp = B.xp
        y = xp.where(x > 0, x, self.alpha * xp.expm1(xp.minimum(x, 0))).astype(x.dtype)
        return y, (x, y)

    def backward(self, g, cache):
        x, y = cache
        return (B.xp.where(x > 0, g, g * (y + self.alpha)).astype(g.dtype),)


@register()
class Softmax(Layer):
    """y_i = exp(x_i) / sum_j exp(x_j) over ``axis``; dx = y (dy - sum(dy y))."""

    def __init__(self, axis: int = -1, **kw):
        super().__init__(**kw)
        self.axis = axis

    def build(self, input_shapes, ctx):
        shape = input_shapes[0]
        if not -len(shape) - 1 < self.axis <= len(shape) or self.axis == 0:
            raise ValueError(f"axis {self.axis} is not a feature axis of input shape {list(shape)}")
        return shape

    def forward(self, x, training=False, mask=None):
        xt = B.xp.moveaxis(x, self.axis, -1)
        y = _softmax(xt)
        return B.xp.moveaxis(y, -1, self.axis), y

    def backward(self, g, y):
        gt = B.xp.moveaxis(g, self.axis, -1)
        return (B.xp.moveaxis(_softmax_backward(None, y, gt), -1, self.axis),)


@register()
class PReLU(Layer):
    """y = x for x > 0, alpha * x otherwise, alpha learned per feature (shared over ``shared_axes``).

    alpha has the input's sample shape with each shared axis (1-based, as Keras) of size 1;
    d alpha = sum of g * min(x, 0) over the batch and the shared axes.
    """

    def __init__(
        self, alpha_initializer: InitializerName = "zeros", shared_axes: list[PositiveInt] | None = None, **kw
    ):
        super().__init__(**kw)
        self.alpha_initializer, self.shared_axes = alpha_initializer, shared_axes

    def build(self, input_shapes, ctx):
        shape = list(input_shapes[0])
        for axis in self.shared_axes or []:
            if axis > len(shape):
                raise ValueError(
                    f"shared_axes {self.shared_axes} names axis {axis}, but the input has {len(shape)} feature axes"
                )
            shape[axis - 1] = 1
        self.add_param("alpha", initializers.initialize(self.alpha_initializer, tuple(shape), ctx.init_rng))
        return input_shapes[0]

    def forward(self, x, training=False, mask=None):
        a = self.params["alpha"]
        return B.xp.where(x > 0, x, a * x).astype(x.dtype), x

    def backward(self, g, x):
        xp = B.xp
        a = self.params["alpha"]
        axes = (0, *(i + 1 for i, n in enumerate(a.shape) if n == 1 and x.shape[i + 1] != 1))
        self.grads["alpha"][...] = (g * xp.minimum(x, 0)).sum(axis=axes, keepdims=True)[0]
        return (xp.where(x > 0, g, a * g).astype(g.dtype),)
