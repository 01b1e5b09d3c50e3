"""Merge layers: Multiply, Subtract, Average, Maximum, Minimum (inputs of one shape) and Dot.

Add and Concatenate live in nnctl/layers/core.py. Keras counts the batch axis as axis 0, and so does
``Dot``'s ``axes``.
"""

from __future__ import annotations

from nnctl import backend as B
from nnctl.layers.base import Layer, register


class _Elementwise(Layer):
    """Shared elementwise merge of several inputs of one shape."""

    n_inputs: int | None = None  # None: two or more

    def build(self, input_shapes, ctx):
        name = type(self).__name__
        if self.n_inputs is not None and len(input_shapes) != self.n_inputs:
            raise ValueError(f"{name} takes exactly {self.n_inputs} inputs, found {len(input_shapes)}")
        if len(input_shapes) < 2:
            raise ValueError(f"{name} takes at least 2 inputs, found {len(input_shapes)}")
        if len(set(map(tuple, input_shapes))) != 1:
            raise ValueError(f"inputs must share one shape, found {[list(s) for s in input_shapes]}")
        return input_shapes[0]

    def compute_mask(self, mask, inputs):
        return mask


@register()
class Multiply(_Elementwise):
    """Elementwise product: y = x1 * x2 * ...; dx_i = g * prod_{j != i} x_j."""

    def forward(self, *xs, training=False, mask=None):
        y = xs[0] * xs[1]
        for x in xs[2:]:
            y *= x
        return y, xs

    def backward(self, g, xs):
        out = []
        for i in range(len(xs)):
            d = g
            for j, x in enumerate(xs):
                if j != i:
                    d = d * x
            out.append(d)
        return tuple(out)


@register()
class Subtract(_Elementwise):
    """Difference of two inputs: y = x1 - x2; dx1 = g, dx2 = -g."""

    n_inputs = 2

    def forward(self, a, b, training=False, mask=None):
        return a - b, None

    def backward(self, g, cache):
        return g, -g


@register()
class Average(_Elementwise):
    """Elementwise mean: y = (x1 + ... + xk) / k; dx_i = g / k."""

    def forward(self, *xs, training=False, mask=None):
        y = xs[0] + xs[1]
        for x in xs[2:]:
            y += x
        y *= 1.0 / len(xs)
        return y, len(xs)

    def backward(self, g, k):
        d = g * (1.0 / k)
        return (d,) * k


class _Extremum(_Elementwise):
    """y = max (or min) over the inputs; the gradient goes to the first input that attains it."""

    pick = "maximum"

    def forward(self, *xs, training=False, mask=None):
        xp = B.xp
        op = getattr(xp, self.pick)
        y = op(xs[0], xs[1])
        for x in xs[2:]:
            op(y, x, out=y)
        return y, (xs, y)

    def backward(self, g, cache):
        xs, y = cache
        xp = B.xp
        left = xp.ones(y.shape, dtype=bool)  # not yet routed: ties go to the first input that attains y
        out = []
        for x in xs:
            hit = (x == y) & left
            left &= ~hit
            out.append(g * hit)
        return tuple(out)


@register()
class Maximum(_Extremum):
    """Elementwise maximum: y = max(x1, x2, ...); dx_i = g where x_i is the first maximum, else 0."""

    pick = "maximum"


@register()
class Minimum(_Extremum):
    """Elementwise minimum: y = min(x1, x2, ...); dx_i = g where x_i is the first minimum, else 0."""

    pick = "minimum"


_L2_EPSILON = 1e-12  # Keras's l2_normalize floor on the squared norm


@register()
class Dot(Layer):
    """Batched dot product of two inputs over ``axes``: y[n, i.., j..] = sum_k a[n, i.., k] b[n, k, j..].

    ``axes`` is one int or [axis_a, axis_b], counting the batch axis as 0 (negative from the end);
    with ``normalize`` both inputs are first l2-normalised along those axes, u = a / sqrt(max(|a|^2, 1e-12)),
    so y is the cosine similarity. Shapes: (N, *A) and (N, *B) -> (N, *A without axis_a, *B without
    axis_b), (N, 1) when that is empty. E.g. (N, D), (N, D), axes 1 -> (N, 1); (N, T, D), (N, S, D),
    axes 2 -> (N, T, S).
    """

    def __init__(self, axes: int | list[int], normalize: bool = False, **kw):
        super().__init__(**kw)
        self.axes, self.normalize = axes, normalize

    def build(self, input_shapes, ctx):
        if len(input_shapes) != 2:
            raise ValueError(f"Dot takes exactly 2 inputs, found {len(input_shapes)}")
        a, b = (tuple(s) for s in input_shapes)
        axes = [self.axes] * 2 if isinstance(self.axes, int) else list(self.axes)
        if len(axes) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in axes):
            raise ValueError(f"axes must be an int or a list of 2 ints, found {self.axes!r}")
        found = []
        for ax, shape in zip(axes, (a, b)):
            rank = len(shape) + 1  # with the batch axis
            if not (-rank < ax < rank) or ax % rank == 0:
                raise ValueError(f"axes {self.axes!r} is out of range (or the batch axis) for input shape {shape}")
            found.append(ax % rank)
        self._ax = tuple(found)
        if a[found[0] - 1] != b[found[1] - 1]:
            raise ValueError(
                f"axes {self.axes!r} pair sizes {a[found[0] - 1]} and {b[found[1] - 1]} of input shapes "
                f"{list(a)} and {list(b)}; they must be equal"
            )
        out = tuple(s for i, s in enumerate(a) if i != found[0] - 1) + tuple(
            s for i, s in enumerate(b) if i != found[1] - 1
        )
        return out or (1,)

    def _unit(self, x, axis):
        norm = B.xp.sqrt(B.xp.maximum((x * x).sum(axis=axis, keepdims=True), _L2_EPSILON))
        return x / norm, norm

    def forward(self, a, b, training=False, mask=None):
        xp = B.xp
        (ax_a, ax_b), norms = self._ax, (None, None)
        if self.normalize:
            (a, na), (b, nb) = self._unit(a, ax_a), self._unit(b, ax_b)
            norms = (na, nb)
        am = xp.moveaxis(a, ax_a, -1)  # (N, *A', K)
        bm = xp.moveaxis(b, ax_b, 1)  # (N, K, *B')
        n, k = a.shape[0], a.shape[ax_a]
        a3, b3 = am.reshape(n, -1, k), bm.reshape(n, k, -1)
        y = xp.matmul(a3, b3).reshape(n, *am.shape[1:-1], *bm.shape[2:])
        if y.ndim == 1:
            y = y.reshape(n, 1)
        return y, (a3, b3, am.shape, bm.shape, a, b, norms)

    def backward(self, g, cache):
        xp = B.xp
        a3, b3, am_shape, bm_shape, a, b, norms = cache
        n = g.shape[0]
        g3 = g.reshape(n, a3.shape[1], b3.shape[2])
        da = xp.moveaxis(xp.matmul(g3, b3.transpose(0, 2, 1)).reshape(am_shape), -1, self._ax[0])
        db = xp.moveaxis(xp.matmul(a3.transpose(0, 2, 1), g3).reshape(bm_shape), 1, self._ax[1])
        if self.normalize:  # through u = x / |x|: dx = (du - u <u, du>) / |x| (just du / |x| below the floor)
            out = []
            for du, u, norm, ax in ((da, a, norms[0], self._ax[0]), (db, b, norms[1], self._ax[1])):
                inside = (norm * norm > _L2_EPSILON).astype(du.dtype)
                out.append((du - u * (u * du).sum(axis=ax, keepdims=True) * inside) / norm)
            da, db = out
        return da, db

    def compute_mask(self, mask, inputs):
        return None
