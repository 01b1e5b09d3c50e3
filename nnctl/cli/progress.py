"""Training progress on stderr: a live bar per epoch on a terminal, one plain line per epoch elsewhere.

On a terminal (rich): the current epoch's bar advances per batch with batch k/n, samples/s, ETA and the
running training loss; the loss is a device read, so the bar refreshes at most every
``NNCTL_REFRESH_SECONDS`` (default 0.25 s), never per batch. A finished epoch leaves its line on screen
(Keras ``verbose=1`` layout) with every metric, wrapped to the terminal width. Elsewhere (a pipe, a log
file): ``epoch 3/10  loss 0.0812  ...  4.1 s  14,500 samples/s``, no control characters.
"""

from __future__ import annotations

import os
import sys
import time

from nnctl.cli.output import human

# keys of an epoch event that are not metrics (shown apart, or not at all)
NOT_METRICS = ("event", "epoch", "epochs", "seconds", "samples_per_second", "lr")


def metric_items(event: dict) -> list[str]:
    """``name value`` for every metric of an epoch event, training metrics before val_ ones."""
    keys = [
        k
        for k in event
        if k not in NOT_METRICS and isinstance(event[k], (int, float)) and not isinstance(event[k], bool)
    ]

    def order(k):  # Keras's order: loss, then metrics, then the same for validation
        base = k.removeprefix("val_")
        return (k.startswith("val_"), base != "loss")

    keys = sorted(keys, key=order)  # stable: metrics keep the spec's order
    return [f"{k} {human(event[k])}" for k in keys]


def speed_items(event: dict) -> list[str]:
    out = []
    if isinstance(event.get("seconds"), (int, float)):
        out.append(seconds_text(event["seconds"]))
    if isinstance(event.get("samples_per_second"), (int, float)):
        out.append(f"{event['samples_per_second']:,.0f} samples/s")
    return out


def seconds_text(s: float) -> str:
    return f"{s:.1f} s" if s >= 1 else f"{s:.2f} s"


def plain_line(event: dict) -> str:
    """The one line per epoch written when stderr is not a terminal."""
    return "  ".join([f"epoch {event['epoch']}/{event['epochs']}", *metric_items(event), *speed_items(event)])


def wrap(items: list[str], width: int, indent: int = 2) -> list[str]:
    """Items joined by two spaces into lines of at most ``width`` columns; an item is never split."""
    lines, line = [], ""
    for item in items:
        candidate = f"{line}  {item}" if line else item
        if line and len(candidate) > width:
            lines.append(line)
            line = " " * indent + item
        else:
            line = candidate
    if line:
        lines.append(line)
    return lines


def kept_lines(event: dict, batches: int, width: int, bar: str = "━") -> list[str]:
    """The lines a finished epoch leaves on a terminal: epoch, batches, a full bar, time and speed, then
    every metric on the lines below, indented."""
    head = [f"epoch {event['epoch']}/{event['epochs']}", f"{batches}/{batches}", bar * 20, *speed_items(event)]
    return wrap(head, width) + ["  " + line for line in wrap(metric_items(event), width - 2, indent=0)]


def _refresh_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get("NNCTL_REFRESH_SECONDS", "0.25")))
    except ValueError:
        return 0.25


class Progress:
    """Per-batch bars on a terminal, plain epoch lines elsewhere, nothing with ``enabled=False``.

    ``batch`` is the trainer's ``Hooks.on_batch``; ``epoch`` takes each epoch event.
    """

    def __init__(self, enabled: bool, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.live = enabled and self.stream.isatty()
        self.every = _refresh_seconds()
        self._progress = self._task = None
        self._epoch = self._batches = 0
        self._last = 0.0

    def __enter__(self):
        if self.live:
            from rich.console import Console
            from rich.progress import BarColumn, TextColumn
            from rich.progress import Progress as RichProgress

            console = Console(file=self.stream, highlight=False)
            self._bar = "━" if (console.encoding or "").lower().startswith("utf") else "="
            self._progress = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(bar_width=None),
                TextColumn("{task.fields[info]}"),
                console=console,
                auto_refresh=False,
                transient=True,
                expand=True,
            )
            self._progress.__enter__()
        return self

    def batch(self, bp) -> None:
        """After every batch: move the bar; read the loss and redraw only when the refresh interval has passed."""
        if self._progress is None:
            return
        now = time.perf_counter()
        if bp.epoch != self._epoch or self._task is None:
            self._new_epoch(bp, now)
        self._batches = bp.batches
        if bp.batch > 1 and now - self._last < self.every and bp.batch < bp.batches:
            return
        self._last = now
        elapsed = max(now - bp.started, 1e-9)
        info = [f"{bp.samples / elapsed:,.0f} samples/s", f"loss {human(bp.mean_loss())}"]
        if bp.batch < bp.batches:
            eta = elapsed / bp.batch * (bp.batches - bp.batch)
            info.append(f"ETA {int(eta // 60)}:{int(eta % 60):02d}")
        self._progress.update(
            self._task,
            completed=bp.batch,
            total=bp.batches,
            description=f"epoch {bp.epoch}/{self._epochs}  {bp.batch}/{bp.batches}",
            info="  ".join(info),
        )
        self._progress.refresh()

    def _new_epoch(self, bp, now) -> None:
        if self._task is not None:
            self._progress.remove_task(self._task)
        self._epoch, self._last = bp.epoch, 0.0
        self._task = self._progress.add_task(f"epoch {bp.epoch}/{self._epochs}", total=bp.batches, info="")

    _epochs = "?"

    def set_epochs(self, epochs: int) -> None:
        self._epochs = epochs

    def epoch(self, event: dict) -> None:
        """An epoch finished: keep its line (terminal) or write its plain line."""
        if not self.enabled:
            return
        if self._progress is None:
            self.stream.write(plain_line(event) + "\n")
            self.stream.flush()
            return
        if self._task is not None:
            self._progress.remove_task(self._task)
            self._task = None
            self._progress.refresh()  # the live area is empty before the kept lines go above it
        width = self._progress.console.width
        for line in kept_lines(event, self._batches, width, self._bar):
            self._progress.console.print(
                line, markup=False, highlight=False, no_wrap=True, overflow="ignore", crop=False
            )

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)


class RowsBar:
    """A transient bar over the rows of an evaluation or prediction, on a terminal only (``rows`` is the
    ``on_batch(done, total)`` callback of ``inference.evaluate``/``predict``); redrawn at most every
    ``NNCTL_REFRESH_SECONDS``, and gone when the work ends, so stdout's results stand alone."""

    def __init__(self, label: str, enabled: bool, stream=None):
        self.label, self.stream = label, stream or sys.stderr
        self.live = enabled and self.stream.isatty()
        self.every = _refresh_seconds()
        self._progress = self._task = None
        self._last, self._started = 0.0, time.perf_counter()

    def __enter__(self):
        if self.live:
            from rich.console import Console
            from rich.progress import BarColumn, TextColumn
            from rich.progress import Progress as RichProgress

            self._progress = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(bar_width=None),
                TextColumn("{task.fields[info]}"),
                console=Console(file=self.stream, highlight=False),
                auto_refresh=False,
                transient=True,
                expand=True,
            )
            self._progress.__enter__()
        return self

    def rows(self, done: int, total: int) -> None:
        if self._progress is None:
            return
        now = time.perf_counter()
        if self._task is None:
            self._task = self._progress.add_task(self.label, total=total, info="")
        elif now - self._last < self.every and done < total:
            return
        self._last = now
        rate = done / max(now - self._started, 1e-9)
        self._progress.update(
            self._task,
            completed=done,
            total=total,
            description=f"{self.label}  {done:,}/{total:,}",
            info=f"{rate:,.0f} samples/s",
        )
        self._progress.refresh()

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)
