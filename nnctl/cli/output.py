"""Rendering: results on stdout (plain text or one JSON object per line), progress and logs on stderr.

Progress bars show only when stderr is a terminal and neither --quiet nor --json is given, so log
files and pipelines never receive control characters.
"""

from __future__ import annotations

import json
import math
import sys


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


def fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3e}"
    return str(v)


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


class Progress:
    """Epoch progress on stderr with rich (only on a terminal): epoch, loss, samples/s, ETA."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()
        self._progress = None
        self._task = None

    def __enter__(self):
        if self.enabled:
            from rich.console import Console  # noqa: PLC0415
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn  # noqa: PLC0415

            self._progress = Progress(TextColumn("epoch {task.completed}/{task.total}"), BarColumn(),
                                      TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
                                      console=Console(stderr=True), transient=False)
            self._progress.__enter__()
        return self

    def update(self, event: dict) -> None:
        if self._progress is None:
            return
        if self._task is None:
            self._task = self._progress.add_task("train", total=event["epochs"], info="")
        info = "  ".join(f"{k} {fmt(v)}" for k, v in event.items()
                         if k not in ("event", "epoch", "epochs", "seconds", "lr") and isinstance(v, float))
        self._progress.update(self._task, completed=event["epoch"], info=info)

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)
