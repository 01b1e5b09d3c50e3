"""Weight penalties (Keras names): ``kernel_regularizer = "l2"``, ``{l2 = 1e-4}`` or ``{type = "l1", l1 = 0.01}``.

penalty(w) = l1 * sum |w| + l2 * sum w^2;  gradient l1 * sign(w) + 2 l2 w (added by graph.regularization).
A table without ``type`` is ``l1_l2`` (both coefficients default to 0); the names ``l1`` and ``l2`` alone
mean a coefficient of 0.01, as in Keras.
"""

from __future__ import annotations

from typing import Annotated

from nnctl.fields import NameOf, NonNegativeFloat
from nnctl.registry import Registry

REGULARIZERS: Registry[type] = Registry("regularizer")
#: annotation of a layer key that names a regularizer
RegularizerName = Annotated[str | dict, NameOf("regularizer", default_type="l1_l2")]


@REGULARIZERS.register("l1_l2")
class L1L2:
    def __init__(self, l1: NonNegativeFloat = 0.0, l2: NonNegativeFloat = 0.0):
        self.l1, self.l2 = float(l1), float(l2)


@REGULARIZERS.register("l1")
class L1(L1L2):
    def __init__(self, l1: NonNegativeFloat = 0.01):
        L1L2.__init__(self, l1=l1)


@REGULARIZERS.register("l2")
class L2(L1L2):
    def __init__(self, l2: NonNegativeFloat = 0.01):
        L1L2.__init__(self, l2=l2)


def coefficients(spec: str | dict | None) -> dict[str, float] | None:
    """``{"l1": ..., "l2": ...}`` of a regularizer spec value, or None when there is none (or both are 0)."""
    if not spec:
        return None
    if isinstance(spec, str):
        reg = REGULARIZERS.get(spec)()
    else:
        kwargs = {k: v for k, v in spec.items() if k != "type"}
        reg = REGULARIZERS.get(spec.get("type", "l1_l2"))(**kwargs)
    return {"l1": reg.l1, "l2": reg.l2} if (reg.l1 or reg.l2) else None
