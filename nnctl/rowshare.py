"""Random draws of a whole global batch, of which one data-parallel rank keeps its own rows.

A ``RowShare`` is a numpy Generator (it shares the wrapped Generator's bit generator, so the two have
one state) with a ``share = (lo, hi, g)``. A draw whose size is ``(hi - lo, *rest)`` is made as
``(g, *rest)`` and sliced to rows ``[lo:hi]``:

    RowShare(rng, (lo, hi, g)).random((hi - lo, *rest))  ==  rng.random((g, *rest))[lo:hi]

so row ``i`` of the share gets the numbers one process draws for row ``lo + i`` of the global batch,
and every rank's generator advances by the same ``g * prod(rest)`` values whatever its share: all
ranks keep equal states. Any other size, or ``share = None``, draws as the plain Generator does.

``graph.Model.build`` gives every layer a RowShare through its ``BuildContext`` (``Model.streams``), with
``share = None``: one process draws exactly as a plain Generator; a data-parallel strategy sets the shares of
those streams per batch and never touches a layer.
"""

from __future__ import annotations

import numpy as np


class RowShare(np.random.Generator):
    """``rng`` whose per-row draws (first axis = the share's row count) cover the global batch's g rows."""

    def __init__(self, rng: np.random.Generator, share: tuple[int, int, int] | None = None):
        super().__init__(rng.bit_generator)
        self.share = share  # (lo, hi, g): this rank's rows of the global batch, set per batch by the trainer

    def __reduce__(self):
        # numpy's Generator pickles (and deep-copies) as a plain Generator: keep the type and the share
        return (_row_share, (self.bit_generator, self.share))

    def _rows(self, draw, size, *args, **kw):
        if self.share is not None and size is not None:
            lo, hi, g = self.share
            shape = (int(size),) if np.ndim(size) == 0 else tuple(size)
            # parameters (low, high) must be scalars: arrays shaped like the share would not broadcast to g rows
            if shape and shape[0] == hi - lo:
                return draw(*args, size=(g, *shape[1:]), **kw)[lo:hi]
        return draw(*args, size=size, **kw)

    # the draws that dropout and augmentation make per row; the defaults are numpy's
    # (numpy's stubs overload these per dtype; the overrides keep every call form: mypy's override check is off)
    def random(self, size=None, dtype=np.float64):  # type: ignore[override]
        return self._rows(super().random, size, dtype=dtype)

    def standard_normal(self, size=None, dtype=np.float64):  # type: ignore[override]
        return self._rows(super().standard_normal, size, dtype=dtype)

    def uniform(self, low=0.0, high=1.0, size=None):
        return self._rows(super().uniform, size, low, high)

    def integers(self, low, high=None, size=None, dtype=np.int64, endpoint=False):
        return self._rows(super().integers, size, low, high, dtype=dtype, endpoint=endpoint)


def _row_share(bit_generator: np.random.BitGenerator, share: tuple[int, int, int] | None) -> RowShare:
    return RowShare(np.random.Generator(bit_generator), share)
