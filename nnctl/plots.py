"""Pictures of a run: training curves (PNG or plain text for a terminal) and confusion matrices.

A history is ``{name: [value per epoch]}`` as stored in checkpoints and run folders; each quantity
(``loss`` and every metric) gets one panel with its training curve and its ``val_`` curve.
matplotlib is an optional extra, imported only when a PNG is asked for.
"""

from __future__ import annotations

import math
import pathlib

import numpy as np

from nnctl.checkpoint import atomic_write
from nnctl.errors import SpecError
from nnctl.metrics import higher_is_better
from nnctl.numfmt import human
from nnctl.report import confusion_counts as counts

#: history entries that describe the run, not the model's quality: never plotted or compared
BOOKKEEPING = ("lr", "seconds", "samples_per_second")


def quantities(history: dict) -> list[str]:
    """The plotted quantities in order: ``loss`` first, then each metric (``val_`` curves go with them)."""
    names: list[str] = []
    for key in history:
        base = key.removeprefix("val_")
        if base not in BOOKKEEPING and base not in names:
            names.append(base)
    return sorted(names, key=lambda n: n != "loss")  # stable: metrics keep their logged order


def _finite(values) -> list[tuple[int, float]]:
    """(epoch, value) pairs with 1-based epochs, NaN/inf dropped (a diverged epoch has no point)."""
    out = []
    for i, v in enumerate(values):
        if v is not None and math.isfinite(float(v)):
            out.append((i + 1, float(v)))
    return out


def _figure(what: str):
    """A matplotlib Figure without pyplot (no global backend state; PNG output goes through Agg)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise SpecError(
            f"{what}: writing a PNG needs matplotlib (a core dependency: reinstall nnctl, or pip install matplotlib)"
        ) from None
    return Figure


def _save(fig, output_png) -> None:
    # the temporary file has no .png suffix, so the format is given explicitly
    atomic_write(output_png, lambda tmp: fig.savefig(tmp, format="png", dpi=100))


def plot_history(history: dict, output_png, title: str | None = None) -> None:
    """Write a PNG with one panel per quantity: training curve and validation curve against the epoch."""
    names = quantities(history)
    if not names:
        raise SpecError(f"{output_png}: the history holds no loss or metric to plot")
    Figure = _figure(str(output_png))
    from matplotlib.ticker import MaxNLocator

    cols = min(len(names), 3)
    rows = -(-len(names) // cols)
    fig = Figure(figsize=(4.5 * cols, 3.4 * rows), layout="constrained")
    if title:
        fig.suptitle(title)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, name in zip(axes, names):
        for key, label, style in ((name, "training", "-"), (f"val_{name}", "validation", "--")):
            points = _finite(history.get(key, []))
            if points:
                ep, val = zip(*points)
                ax.plot(ep, val, style, marker="." if len(points) < 30 else None, label=label)
        val_points = _finite(history.get(f"val_{name}", []))
        if val_points:  # mark the best validation epoch: where early stopping would have kept the weights
            pick = max if higher_is_better(name) else min
            best = pick(val_points, key=lambda p: p[1])
            ax.plot([best[0]], [best[1]], "o", color="black", fillstyle="none", label=f"best (epoch {best[0]})")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    _save(fig, output_png)


def confusion_counts(y_true_labels, y_pred_labels, classes) -> np.ndarray:
    """counts[i, j] = samples of true class classes[i] predicted as classes[j] (``report.confusion_counts``)."""
    return counts(y_true_labels, y_pred_labels, classes)


def confusion_matrix(y_true_labels, y_pred_labels, classes, output_png, title: str | None = None) -> np.ndarray:
    """Write the confusion matrix (rows: true class, columns: predicted) as a PNG; returns the counts."""
    counts = confusion_counts(y_true_labels, y_pred_labels, classes)
    draw_confusion(counts, classes, output_png, title)
    return counts


def draw_confusion(counts, classes, output_png, title: str | None = None) -> None:
    """Write counts[i, j] (samples of true class i predicted as j, a square integer array) as a PNG."""
    counts = np.asarray(counts, dtype=np.int64)
    Figure = _figure(str(output_png))
    k = len(counts)
    size = min(max(4.0, 0.6 * k + 2.5), 16.0)
    fig = Figure(figsize=(size, size * 0.9), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(counts, cmap="Blues")
    fig.colorbar(image, ax=ax, shrink=0.8)
    labels = [str(c) for c in np.asarray(classes).tolist()]
    ax.set_xticks(range(k), labels, rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center")
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    total = max(int(counts.sum()), 1)
    accuracy = np.trace(counts) / total
    heading = f"{total} samples, accuracy {accuracy:.3f}"
    ax.set_title(f"{title}\n{heading}" if title else f"confusion matrix: {heading}")
    if k <= 30:  # beyond that the numbers no longer fit in the cells
        threshold = counts.max() / 2 if counts.size else 0
        for i in range(k):
            for j in range(k):
                ax.text(
                    j,
                    i,
                    str(counts[i, j]),
                    ha="center",
                    va="center",
                    fontsize="small",
                    color="white" if counts[i, j] > threshold else "black",
                )
    _save(fig, output_png)


# -- plain text -----------------------------------------------------------------------------------
def _label(v: float) -> str:
    return human(float(v))


def _panel(name: str, train: list, val: list, n_epochs: int, width: int, height: int) -> list[str]:
    """height + 3 lines: title, chart rows, x axis, epoch labels. Training '*', validation 'o', both '#'."""
    tp, vp = _finite(train), _finite(val)
    values = [v for _, v in tp + vp]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if hi == lo:  # a flat curve: centre it
        lo, hi = lo - 0.5 * (abs(lo) or 1.0), hi + 0.5 * (abs(hi) or 1.0)
    grid = [[" "] * width for _ in range(height)]

    def draw(points, mark):
        # linear interpolation between epochs so a curve stays connected when epochs < width
        if not points:
            return
        ep = np.array([p[0] for p in points], dtype=float)
        val = np.array([p[1] for p in points])
        span = max(n_epochs - 1, 1)
        for col in range(width):
            e = 1 + col * span / max(width - 1, 1)
            if e < ep[0] - 1e-9 or e > ep[-1] + 1e-9:
                continue
            v = float(np.interp(e, ep, val))
            row = int(round((hi - v) / (hi - lo) * (height - 1)))
            cell = grid[row][col]
            grid[row][col] = mark if cell in (" ", mark) else "#"

    draw(tp, "*")
    draw(vp, "o")
    title = f"{name}:"
    if tp:
        title += f" training * (last {_label(tp[-1][1])})"
    if vp:
        best = (max if higher_is_better(name) else min)(vp, key=lambda p: p[1])
        title += (
            f"{',' if tp else ''} validation o (last {_label(vp[-1][1])}, best {_label(best[1])} at epoch {best[0]})"
        )
    gutter = max(len(_label(hi)), len(_label(lo)), len(_label((hi + lo) / 2)))
    lines = [title]
    for r in range(height):
        if r == 0:
            tick = _label(hi)
        elif r == height - 1:
            tick = _label(lo)
        elif r == (height - 1) // 2 and height > 4:
            tick = _label(hi - (hi - lo) * r / (height - 1))
        else:
            tick = ""
        lines.append(f"{tick:>{gutter}} |{''.join(grid[r])}".rstrip())
    lines.append(" " * gutter + " +" + "-" * width)
    left, right = "1", str(n_epochs)
    mid = "epoch"
    pad = max(width - len(left) - len(right) - len(mid), 2)
    axis = left + " " * (pad // 2) + mid + " " * (pad - pad // 2) + right
    lines.append(" " * (gutter + 2) + axis)
    return lines


def terminal_curves(history: dict, width: int = 60, height: int = 12) -> str:
    """Plain-text curves of every quantity for a terminal (no colours, no control characters).

    Each quantity is ``height + 3`` lines (title, ``height`` chart rows, axis, epoch labels);
    quantities are separated by one blank line.
    """
    width, height = max(int(width), 10), max(int(height), 3)
    names = quantities(history)
    if not names:
        return "no loss or metric recorded"
    n_epochs = max(len(v) for v in history.values())
    if n_epochs == 0:
        return "no epochs recorded"
    panels = [_panel(n, history.get(n, []), history.get(f"val_{n}", []), n_epochs, width, height) for n in names]
    return "\n\n".join("\n".join(p) for p in panels)


# -- evaluate --confusion-matrix ------------------------------------------------------------------
def confusion_from_checkpoint(checkpoint, data: str | None, output_png, device: str = "auto") -> dict:
    """Evaluate a checkpoint on ``data`` (or the spec's data.test) and write its confusion matrix PNG.

    Returns ``{"confusion_matrix": path, "classes": [...], "counts": [[...]]}`` for --json output.
    """
    from nnctl.inference import evaluate

    result = evaluate(checkpoint, data, device)
    drawn = confusion_from_result(result, checkpoint, output_png)
    return {"confusion_matrix": drawn, **result["confusion"]}


def confusion_from_result(result: dict, checkpoint, output_png) -> str:
    """Draw the confusion counts an evaluation already computed (``inference.evaluate``'s ``confusion``)
    as a PNG: no second restore or forward pass. Returns the PNG's path."""
    if "confusion" not in result:
        if "error_mean" in result:  # an autoencoder's report: reconstruction errors, no classes
            raise SpecError(f"--confusion-matrix: {checkpoint} is an autoencoder; a confusion matrix needs classes")
        if "mse" in result:  # inference.evaluate adds mse, mae and rmse for regression, only
            raise SpecError(f"--confusion-matrix: {checkpoint} is a regression model; a confusion matrix needs classes")
        raise SpecError(f"--confusion-matrix: {checkpoint} has several outputs; a confusion matrix needs one")
    conf = result["confusion"]
    title = f"{pathlib.Path(str(checkpoint)).name} on {pathlib.Path(str(result['data'])).name}"
    draw_confusion(conf["counts"], conf["classes"], output_png, title=title)
    return str(output_png)
