"""Rendering: results on stdout (plain text or one JSON object per line), progress and logs on stderr.

Training progress lives in ``nnctl.cli.progress``: bars only when stderr is a terminal and neither
--quiet nor --json is given, so log files and pipelines never receive control characters.
"""

from __future__ import annotations

import json
import math
import sys

from nnctl.numfmt import human


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item"):
        return _clean(value.item())
    return value


def emit_json(obj: dict) -> None:
    sys.stdout.write(json.dumps(_clean(obj)) + "\n")
    sys.stdout.flush()


def log(message: str) -> None:
    """A line for the person watching: stderr."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


fmt = human  # the name the verbs import; the rounding itself lives in the library (nnctl.numfmt)


def table(rows: list[list], header: list[str], title: str | None = None) -> None:
    """A plain aligned table on stdout (no colours, so it can be piped)."""
    cells = [header] + [[fmt(c) for c in r] for r in rows]
    widths = [max(len(str(r[i])) for r in cells) for i in range(len(header))]
    if title:
        print(title)
    for j, r in enumerate(cells):
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
        if j == 0:
            print("  ".join("-" * w for w in widths))
