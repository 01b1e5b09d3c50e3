"""Core layers: Dense, Activation, Dropout, Flatten, Reshape, Add, Concatenate, Cropping1D."""

from __future__ import annotations

from typing import Annotated

import numpy as np

from nnctl import backend as B
from nnctl import initializers, threads
from nnctl.fields import NonNegativeInt, PositiveInt, Range, Rate
from nnctl.initializers import InitializerName
from nnctl.layers.base import Layer, register
from nnctl.ops import activations
from nnctl.ops.activations import ActivationName


@register()
class Dense(Layer):
    """Fully connected layer on the last axis: y = x W + b; x (..., in), W (in, units), y (..., units).

    On a 3-D input (N, T, F) it applies the same weights at every step, which is Keras's
    TimeDistributed(Dense) as well.
    """

    activation_follows = True

    def __init__(
        self,
        units: PositiveInt,
        activation: ActivationName | None = None,
        use_bias: bool = True,
        kernel_initializer: InitializerName = "glorot_uniform",
        bias_initializer: InitializerName = "zeros",
        alpha: float | None = None,
        **kw,
    ):
        super().__init__(**kw)
        self.units, self.activation, self.use_bias, self.alpha = units, activation, use_bias, alpha
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer

    def build(self, input_shapes, ctx):
        fan_in = input_shapes[0][-1]
        self.add_param("kernel", initializers.initialize(self.kernel_initializer, (fan_in, self.units), ctx.init_rng))
        if self.use_bias:
            self.add_param("bias", initializers.initialize(self.bias_initializer, (self.units,), ctx.init_rng))
        return (*input_shapes[0][:-1], self.units)

    def forward(self, x, training=False, mask=None):
        # the products' rows side by side on the slice pool (nnctl/threads.py) when the model holds it
        y = threads.matmul(x.reshape(-1, x.shape[-1]), self.params["kernel"]).reshape(*x.shape[:-1], self.units)
        if self.use_bias:
            y += self.params["bias"]
        return y, x

    def backward(self, g, x):
        x2, g2 = x.reshape(-1, x.shape[-1]), g.reshape(-1, g.shape[-1])
        threads.matmul(x2.T, g2, out=self.grads["kernel"])
        if self.use_bias:
            g2.sum(axis=0, out=self.grads["bias"])
        if not self.input_grads_needed[0]:
            return (None,)
        return (threads.matmul(g2, self.params["kernel"].T).reshape(x.shape),)


@register()
class Activation(Layer):
    """Elementwise activation: y = f(x) for any input shape (softmax over the last axis)."""

    def __init__(self, activation: ActivationName = "linear", alpha: float | None = None, **kw):
        super().__init__(**kw)
        self.activation, self.alpha = activation, alpha
        self.fn = activations.get(activation, **({} if alpha is None else {"alpha": alpha}))

    @property
    def in_place_at_inference(self) -> bool:  # type: ignore[override]
        return self.activation == "relu"

    def forward(self, x, training=False, mask=None):
        y = self.fn.forward(x)
        return y, (x, y)

    def forward_in_place(self, x):
        """max(x, 0) into x: inference keeps no pre-activation."""
        return B.xp.maximum(x, 0, out=x)

    def backward(self, g, cache):
        x, y = cache
        return (self.fn.backward(x, y, g),)


@register()
class Dropout(Layer):
    """Inverted dropout: in training y = x * m / (1 - rate), m ~ Bernoulli(1 - rate); identity in inference."""

    def __init__(self, rate: Rate = 0.5, **kw):
        super().__init__(**kw)
        self.rate = rate

    def forward(self, x, training=False, mask=None):
        if not training or self.rate == 0:
            return x, None
        # size (N, ...): under data parallelism self.rng is a RowShare, which draws the global batch's masks
        keep = B.asarray(self.rng.random(x.shape, dtype=np.float32) >= self.rate)
        m = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - self.rate))
        return x * m, m

    def backward(self, g, m):
        return (g if m is None else g * m,)


@register()
class Flatten(Layer):
    """Flatten all but the batch axis: (N, d1, d2, ...) -> (N, d1*d2*...)."""

    def build(self, input_shapes, ctx):
        return (int(np.prod(input_shapes[0])),)

    def forward(self, x, training=False, mask=None):
        return x.reshape(x.shape[0], -1), x.shape

    def backward(self, g, shape):
        return (g.reshape(shape),)

    def compute_mask(self, mask, inputs):
        return None


@register()
class Reshape(Layer):
    """Reshape to ``target_shape`` (without the batch axis; one entry may be -1)."""

    def __init__(self, target_shape: list[Annotated[int, Range(-1)]], **kw):
        super().__init__(**kw)
        self.target_shape = list(target_shape)

    def build(self, input_shapes, ctx):
        total = int(np.prod(input_shapes[0]))
        shape = list(self.target_shape)
        if -1 in shape:
            known = int(np.prod([s for s in shape if s != -1]))
            shape[shape.index(-1)] = total // known if known else 0
        if int(np.prod(shape)) != total:
            raise ValueError(
                f"target_shape {self.target_shape} does not hold the {total} values of input shape "
                f"{list(input_shapes[0])}"
            )
        self._shape = tuple(shape)
        return self._shape

    def forward(self, x, training=False, mask=None):
        return x.reshape(x.shape[0], *self._shape), x.shape

    def backward(self, g, shape):
        return (g.reshape(shape),)

    def compute_mask(self, mask, inputs):
        return None


@register()
class Add(Layer):
    """Elementwise sum of its inputs (all of one shape): y = x1 + x2 + ..."""

    def build(self, input_shapes, ctx):
        if len(set(map(tuple, input_shapes))) != 1:
            raise ValueError(f"inputs must share one shape, found {[list(s) for s in input_shapes]}")
        return input_shapes[0]

    def forward(self, *xs, training=False, mask=None):
        y = xs[0] + xs[1] if len(xs) > 1 else xs[0].copy()
        for x in xs[2:]:
            y += x
        return y, len(xs)

    def backward(self, g, n):
        return (g,) * n


@register()
class Concatenate(Layer):
    """Join inputs along ``axis`` (Keras counting: axis 0 is the batch axis, -1 the last)."""

    mask_per_input = True  # joining along the steps joins the inputs' masks

    def __init__(self, axis: int = -1, **kw):
        super().__init__(**kw)
        self.axis = axis

    def build(self, input_shapes, ctx):
        rank = len(input_shapes[0])
        ax = self.axis if self.axis < 0 else self.axis - 1  # Keras's axis counts the batch axis
        if not -rank <= ax < rank:
            raise ValueError(f"axis {self.axis} is out of range for inputs of rank {rank}")
        ax %= rank
        others = {tuple(s[:ax]) + tuple(s[ax + 1 :]) for s in input_shapes}
        if len(others) != 1:
            raise ValueError(
                f"inputs must match on every axis but {self.axis}, found {[list(s) for s in input_shapes]}"
            )
        self._ax = ax + 1
        out = list(input_shapes[0])
        out[ax] = sum(s[ax] for s in input_shapes)
        return tuple(out)

    def forward(self, *xs, training=False, mask=None):
        return B.xp.concatenate(xs, axis=self._ax), np.cumsum([x.shape[self._ax] for x in xs])[:-1].tolist()

    def backward(self, g, splits):
        return tuple(B.xp.split(g, splits, axis=self._ax))

    def compute_mask(self, mask, inputs):
        """The inputs' (N, T) masks joined along the steps when ``axis`` is the steps axis, else a step is real
        where any input's is (Keras); an input without a mask counts every step real."""
        known = [m for m in mask if m is not None]
        if not known:
            return None
        if self._ax != 1 and len(known) == len(mask) and all(m is known[0] for m in known):
            return known[0]  # branches of one masked sequence keep its mask
        xp = B.xp
        full = [xp.ones(x.shape[:2], dtype=bool) if m is None else m for m, x in zip(mask, inputs)]
        if self._ax == 1:
            return xp.concatenate(full, axis=1)
        out = full[0]
        for m in full[1:]:
            out = out | m
        return out


@register()
class Cropping1D(Layer):
    """Drop ``cropping = [start, end]`` steps from the two ends of a sequence: (N, T, F) -> (N, T-start-end, F)."""

    def __init__(self, cropping: int | list[NonNegativeInt] = (1, 1), **kw):
        super().__init__(**kw)
        self.cropping = list(cropping)

    def build(self, input_shapes, ctx):
        t, *rest = input_shapes[0]
        a, b = self.cropping
        if a + b >= t:
            raise ValueError(f"cropping {self.cropping} removes all {t} steps")
        return (t - a - b, *rest)

    def forward(self, x, training=False, mask=None):
        a, b = self.cropping
        return x[:, a : x.shape[1] - b], x.shape

    def backward(self, g, shape):
        a, b = self.cropping
        dx = B.xp.zeros(shape, dtype=g.dtype)
        dx[:, a : shape[1] - b] = g
        return (dx,)

    def compute_mask(self, mask, inputs):
        a, b = self.cropping
        return None if mask is None else mask[:, a : mask.shape[1] - b]
