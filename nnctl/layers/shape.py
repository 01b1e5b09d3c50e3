"""Shape layers: Cropping2D, ZeroPadding1D, UpSampling1D, Permute, RepeatVector and Masking.

None of them has parameters; each backward is the adjoint of a copy (crop <-> pad, repeat <-> sum,
transpose <-> inverse transpose).
"""

from __future__ import annotations

from nnctl import backend as B
from nnctl.fields import PositiveInt
from nnctl.layers.base import Layer, expect_input, register
from nnctl.ops import im2col as K


def _count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def side_pairs(value, rank: int, name: str) -> tuple[tuple[int, int], ...]:
    """Keras's int / per-axis ints / per-axis (before, after) pairs as ``rank`` (before, after) pairs."""
    if _count(value):
        return ((value, value),) * rank
    if isinstance(value, (list, tuple)):
        if rank == 1 and len(value) == 2 and all(_count(v) for v in value):
            return (tuple(value),)
        if rank > 1 and len(value) == rank:
            if all(_count(v) for v in value):
                return tuple((v, v) for v in value)
            if all(isinstance(p, (list, tuple)) and len(p) == 2 and all(_count(v) for v in p) for p in value):
                return tuple(tuple(p) for p in value)
    want = "an int or [before, after]" if rank == 1 else "an int, [h, w] or [[top, bottom], [left, right]]"
    raise ValueError(f"{name} must be {want} of non-negative integers, found {value!r}")


@register()
class Cropping2D(Layer):
    """Drop rows and columns at the borders: y = x[:, t:H-b, l:W-r]; (N, H, W, C) -> (N, H-t-b, W-l-r, C).

    Backward places the gradient back into a zero (N, H, W, C) array.
    """

    def __init__(self, cropping: int | list[int] | list[list[int]] = ((0, 0), (0, 0)), **kw):
        super().__init__(**kw)
        self.cropping = cropping

    def build(self, input_shapes, ctx):
        shape = input_shapes[0]
        expect_input(self, shape, "(height, width, channels)")
        self._crop = side_pairs(self.cropping, 2, "cropping")
        (t, b), (left, r) = self._crop
        if t + b >= shape[0] or left + r >= shape[1]:
            raise ValueError(f"cropping {self.cropping} removes every row or column of an input {list(shape[:2])}")
        return (shape[0] - t - b, shape[1] - left - r, shape[2])

    def forward(self, x, training=False, mask=None):
        return K.crop(x, self._crop), x.shape

    def backward(self, g, shape):
        dx = B.xp.zeros(shape, dtype=g.dtype)
        K.crop(dx, self._crop)[...] = g
        return (dx,)

    def compute_mask(self, mask, inputs):
        return None


@register()
class ZeroPadding1D(Layer):
    """Zero steps at both ends of a sequence: (N, T, F) -> (N, a+T+b, F) with padding = a or [a, b];
    backward crops the gradient."""

    def __init__(self, padding: int | list[int] = 1, **kw):
        super().__init__(**kw)
        self.padding = padding

    def build(self, input_shapes, ctx):
        shape = input_shapes[0]
        expect_input(self, shape, "(steps, features)")
        self._pads = ((0, 0), side_pairs(self.padding, 1, "padding")[0])  # a sequence is an image of height 1
        a, b = self._pads[1]
        return (shape[0] + a + b, shape[1])

    def forward(self, x, training=False, mask=None):
        return K.pad(x[:, None], self._pads)[:, 0], None

    def backward(self, g, cache):
        return (K.crop(g[:, None], self._pads)[:, 0],)

    def compute_mask(self, mask, inputs):
        return None


@register()
class UpSampling1D(Layer):
    """Repeat every step ``size`` times: y[n, t, f] = x[n, t // size, f]; (N, T, F) -> (N, T*size, F).

    Backward sums the gradient over each step's copies.
    """

    def __init__(self, size: PositiveInt = 2, **kw):
        super().__init__(**kw)
        self.size = size

    def build(self, input_shapes, ctx):
        shape = input_shapes[0]
        expect_input(self, shape, "(steps, features)")
        (self._size,) = K.as_tuple(self.size, 1, "size")
        return (shape[0] * self._size, shape[1])

    def forward(self, x, training=False, mask=None):
        n, t, f = x.shape
        return B.xp.broadcast_to(x[:, :, None], (n, t, self._size, f)).reshape(n, t * self._size, f), x.shape

    def backward(self, g, shape):
        n, t, f = shape
        return (g.reshape(n, t, self._size, f).sum(axis=2),)

    def compute_mask(self, mask, inputs):
        return None


@register()
class Permute(Layer):
    """Reorder the non-batch axes: y = x.transpose(0, *dims), ``dims`` a permutation of 1..rank (Keras counts
    the batch axis as 0); e.g. dims [2, 1] turns (N, T, F) into (N, F, T). Backward: the inverse permutation."""

    def __init__(self, dims: list[int], **kw):
        super().__init__(**kw)
        self.dims = list(dims)

    def build(self, input_shapes, ctx):
        shape = input_shapes[0]
        if sorted(self.dims) != list(range(1, len(shape) + 1)) or any(isinstance(d, bool) for d in self.dims):
            raise ValueError(
                f"dims must be a permutation of 1..{len(shape)} for input shape {tuple(shape)}, found {self.dims!r}"
            )
        self._perm = (0, *self.dims)
        self._inverse = tuple(self._perm.index(a) for a in range(len(self._perm)))
        return tuple(shape[d - 1] for d in self.dims)

    def forward(self, x, training=False, mask=None):
        return B.xp.ascontiguousarray(x.transpose(self._perm)), None

    def backward(self, g, cache):
        return (B.xp.ascontiguousarray(g.transpose(self._inverse)),)

    def compute_mask(self, mask, inputs):
        return mask if self.dims[0] == 1 else None  # the step axis stays first: the padding mask still holds


@register()
class RepeatVector(Layer):
    """Repeat a vector ``n`` times along a new step axis: y[b, t, f] = x[b, f]; (N, F) -> (N, n, F).

    Backward sums the gradient over the n steps.
    """

    def __init__(self, n: PositiveInt, **kw):
        super().__init__(**kw)
        self.n = n

    def build(self, input_shapes, ctx):
        shape = input_shapes[0]
        expect_input(self, shape, "(features,)")
        (self._n,) = K.as_tuple(self.n, 1, "n")
        return (self._n, shape[0])

    def forward(self, x, training=False, mask=None):
        return B.xp.ascontiguousarray(B.xp.broadcast_to(x[:, None], (x.shape[0], self._n, x.shape[1]))), None

    def backward(self, g, cache):
        return (g.sum(axis=1),)

    def compute_mask(self, mask, inputs):
        return None


@register()
class Masking(Layer):
    """Mark steps whose features all equal ``mask_value`` as padding: m[n,t] = any_f(x[n,t,f] != mask_value),
    y = x * m[..., None]; (N, T, F) -> (N, T, F), and the (N, T) mask m for the layers after it."""

    def __init__(self, mask_value: float = 0.0, **kw):
        super().__init__(**kw)
        self.mask_value = mask_value

    def build(self, input_shapes, ctx):
        shape = input_shapes[0]
        if len(shape) < 2:
            raise ValueError(f"Masking expects input of shape (steps, features, ...), found {tuple(shape)}")
        return shape

    def _keep(self, x):
        return (x != self.mask_value).any(axis=tuple(range(2, x.ndim)))  # (N, T)

    def forward(self, x, training=False, mask=None):
        keep = self._keep(x).reshape(*x.shape[:2], *(1,) * (x.ndim - 2)).astype(x.dtype)
        return x * keep, keep

    def backward(self, g, keep):
        return (g * keep,)

    def compute_mask(self, mask, inputs):
        return self._keep(inputs[0])
