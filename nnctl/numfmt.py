"""Numbers rounded for people: the one formatting the CLI's tables and the library's text charts share."""

from __future__ import annotations

import math


def human(v) -> str:
    """A number rounded for people (``--json`` keeps the exact value): 0.0812, 3.17e-05, 1,234,567.

    Floats with abs(v) >= 1e5 get thousands separators and no decimals, abs(v) >= 1e-3 four decimals, smaller
    ones three significant digits; other values (ints, bools, strings, inf, nan) are ``str(v)``; NumPy
    scalars are read with ``.item()`` first.
    """
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, float):
        return str(v)
    if not math.isfinite(v):
        return str(v)
    if v == 0:
        return "0"
    if abs(v) >= 1e5:
        return f"{v:,.0f}"
    return f"{v:.4f}" if abs(v) >= 1e-3 else f"{v:.3g}"
