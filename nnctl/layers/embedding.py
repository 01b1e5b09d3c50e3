"""Token and position embeddings: Embedding, PositionalEncoding (sinusoidal), PositionEmbedding (learned)."""

from __future__ import annotations

import numpy as np

from nnctl import backend as B
from nnctl import initializers
from nnctl.fields import PositiveFloat, PositiveInt
from nnctl.initializers import InitializerName
from nnctl.layers.base import Layer, register


@register()
class Embedding(Layer):
    """Lookup table: y[n, t] = E[ids[n, t]]; ids (N, T) integers (floats are cast), E (input_dim, output_dim),
    y (N, T, output_dim). dE = scatter-add of dy at the ids; ids get no gradient.

    ``mask_zero`` makes id 0 padding: the output mask is ids != 0 (so input_dim counts the 0 too).
    """

    def __init__(
        self,
        input_dim: PositiveInt,
        output_dim: PositiveInt,
        mask_zero: bool = False,
        embeddings_initializer: InitializerName = "uniform",
        **kw,
    ):
        super().__init__(**kw)
        if int(input_dim) < 1 or int(output_dim) < 1:
            raise ValueError(f"input_dim and output_dim must be positive, found {input_dim} and {output_dim}")
        self.input_dim, self.output_dim, self.mask_zero = int(input_dim), int(output_dim), mask_zero
        self.embeddings_initializer = embeddings_initializer

    def build(self, input_shapes, ctx):
        if len(input_shapes) != 1:
            raise ValueError(f"Embedding takes one input (token ids), found {len(input_shapes)}")
        self.add_param(
            "embeddings",
            initializers.initialize(self.embeddings_initializer, (self.input_dim, self.output_dim), ctx.init_rng),
        )
        return (*input_shapes[0], self.output_dim)

    def _ids(self, x):
        xp = B.xp
        ids = x if x.dtype.kind in "iu" else xp.rint(x)
        return ids.astype(xp.int64, copy=False)

    def check_input(self, x):
        ids = x if x.dtype.kind in "iu" else np.rint(x)
        bad = (ids < 0) | (ids >= self.input_dim)
        if not bad.any():
            return None
        row = int(np.argwhere(bad)[0][0])
        return (
            f"sample {row + 1}: token id {int(ids[bad][0])} is outside the table of Embedding {self.name!r}, "
            f"which takes ids 0 to {self.input_dim - 1} (input_dim = {self.input_dim})"
        )

    def forward(self, x, training=False, mask=None):
        ids = self._ids(x)
        return self.params["embeddings"][ids], ids

    def backward(self, g, ids):
        gE = self.grads["embeddings"]
        gE[...] = 0
        B.scatter_add(gE, ids.reshape(-1), g.reshape(-1, self.output_dim))
        return (None,)

    def compute_mask(self, mask, inputs):
        if not self.mask_zero:
            return mask
        return inputs[0] != 0


def sinusoid_table(length: int, depth: int, max_wavelength: float = 10000.0) -> np.ndarray:
    """P[t, 2i] = sin(t / w^(2i/D)), P[t, 2i+1] = cos(t / w^(2i/D)), w = max_wavelength; shape (length, depth)."""
    pos = np.arange(length, dtype=np.float64)[:, None]
    i = np.arange(depth)
    angle = pos / np.power(max_wavelength, (2 * (i // 2)) / depth)
    return np.where(i % 2 == 0, np.sin(angle), np.cos(angle))


@register()
class PositionalEncoding(Layer):
    """Add the fixed sinusoidal position code (Vaswani et al.): y[n, t] = x[n, t] + P[t]; x, y (N, T, D)."""

    def __init__(self, max_wavelength: PositiveFloat = 10000.0, **kw):
        super().__init__(**kw)
        self.max_wavelength = max_wavelength
        self._table = None

    def build(self, input_shapes, ctx):
        shape = tuple(input_shapes[0])
        if len(shape) != 2:
            raise ValueError(f"PositionalEncoding expects inputs of shape (timesteps, features), found {list(shape)}")
        self._host = sinusoid_table(shape[0], shape[1], self.max_wavelength)
        self._table = None
        return shape

    def forward(self, x, training=False, mask=None):
        tab = self._table
        if tab is None or tab.dtype != x.dtype or not isinstance(tab, type(x)):
            tab = self._table = B.asarray(self._host.astype(x.dtype))
        return x + tab[: x.shape[1]], None

    def backward(self, g, cache):
        return (g,)


@register()
class PositionEmbedding(Layer):
    """Add a learned embedding of the position: y[n, t] = x[n, t] + P[t]; P (sequence_length, D), x, y (N, T, D).

    ``sequence_length`` (alias ``max_length``) defaults to the input's T and may exceed it.
    """

    def __init__(
        self,
        sequence_length: PositiveInt | None = None,
        max_length: PositiveInt | None = None,
        embeddings_initializer: InitializerName = "glorot_uniform",
        **kw,
    ):
        super().__init__(**kw)
        if sequence_length is not None and max_length is not None and sequence_length != max_length:
            raise ValueError("give sequence_length or max_length (the same thing), not both")
        self.sequence_length, self.max_length = sequence_length, max_length
        self.embeddings_initializer = embeddings_initializer

    def build(self, input_shapes, ctx):
        shape = tuple(input_shapes[0])
        if len(shape) != 2:
            raise ValueError(f"PositionEmbedding expects inputs of shape (timesteps, features), found {list(shape)}")
        length = self.sequence_length or self.max_length or shape[0]
        if shape[0] > length:
            raise ValueError(f"PositionEmbedding: inputs have {shape[0]} steps, more than sequence_length {length}")
        self.add_param(
            "embeddings", initializers.initialize(self.embeddings_initializer, (length, shape[1]), ctx.init_rng)
        )
        return shape

    def forward(self, x, training=False, mask=None):
        return x + self.params["embeddings"][: x.shape[1]], x.shape[1]

    def backward(self, g, T):
        gE = self.grads["embeddings"]
        g.sum(axis=0, out=gE[:T])
        gE[T:] = 0
        return (g,)
