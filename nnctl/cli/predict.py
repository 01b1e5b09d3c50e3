"""``nnctl predict CHECKPOINT [INPUT|-]``: predictions for new inputs, as CSV, JSON lines or .npy."""

from __future__ import annotations

import io
import json
import sys
from typing import Optional

import typer


def register(app: typer.Typer, reports_errors) -> None:
    @app.command()
    @reports_errors
    def predict(
        checkpoint: str = typer.Argument(..., help="checkpoint written by nnctl train"),
        input_: str = typer.Argument("-", metavar="[INPUT|-]", help="CSV with a header, JSON lines, .npy/.npz, or - for stdin"),
        output: str = typer.Option("-", "--output", "-o", help="file, or - for stdout"),
        format_: str = typer.Option("csv", "--format", "-f", help="csv, jsonl or npy"),
        proba: bool = typer.Option(False, "--proba", help="add one probability column per class"),
        device: str = typer.Option("auto", help="auto, cpu or gpu"),
    ):
        """Predict with a checkpoint: labels for classifiers (as in the training data), values for regression."""
        from nnctl import run  # noqa: PLC0415
        from nnctl.data.inputs import read_inputs  # noqa: PLC0415
        from nnctl.errors import SpecError  # noqa: PLC0415

        if format_ not in ("csv", "jsonl", "npy"):
            raise SpecError(f"--format: expected csv, jsonl or npy, found {format_!r}")
        restored = run.restore(checkpoint, device)  # a bad checkpoint fails before stdin is read
        prep = restored[2]
        outputs, decoded = run.predict(restored, read_inputs(input_, prep))
        data = render(outputs, decoded, prep, format_, proba)
        if output == "-":
            (sys.stdout.buffer.write(data) if isinstance(data, bytes) else sys.stdout.write(data))
            sys.stdout.flush()
        else:
            from nnctl.checkpoint import atomic_write  # noqa: PLC0415

            mode = "wb" if isinstance(data, bytes) else "w"
            atomic_write(output, lambda tmp: open(tmp, mode).write(data))


def _columns(prep, width: int) -> list[str]:
    """Names of the ``width`` prediction columns: target names for regression, prediction[_i] for classes."""
    if prep.task == "regression":
        names = prep.target_names
        return names if len(names) == width else [f"y{i}" for i in range(width)]
    return ["prediction"] if width == 1 else [f"prediction_{i}" for i in range(width)]


def _class_names(prep, outputs):
    if prep.classes is not None:
        return [str(c) for c in prep.classes]
    return [str(i) for i in range(outputs.shape[-1])]


def _probabilities(prep, outputs):
    if prep.task == "binary" and outputs.shape[-1] == 1:
        p1 = outputs.reshape(len(outputs))
        import numpy as np  # noqa: PLC0415

        return np.stack([1 - p1, p1], axis=1)
    return outputs


def render(outputs, decoded, prep, fmt: str, proba: bool):
    import numpy as np  # noqa: PLC0415

    if fmt == "npy":
        buf = io.BytesIO()
        np.save(buf, decoded if not proba else outputs)
        return buf.getvalue()
    values = decoded.reshape(len(decoded), -1)
    cols = _columns(prep, values.shape[1])
    probs = _probabilities(prep, outputs) if (proba and prep.task != "regression") else None
    pcols = []
    if probs is not None:
        names = _class_names(prep, probs)
        if probs.ndim > 2:  # one distribution per output step: proba_<step>_<class>
            pcols = [f"proba_{t}_{c}" for t in range(probs.shape[1]) for c in names]
            probs = probs.reshape(len(probs), -1)
        else:
            pcols = [f"proba_{c}" for c in names]
    if fmt == "jsonl":
        lines = []
        for i in range(len(values)):
            row = {c: _py(v) for c, v in zip(cols, values[i])}
            if probs is not None:
                row.update({c: float(v) for c, v in zip(pcols, probs[i])})
            lines.append(json.dumps(row))
        return "".join(line + "\n" for line in lines)
    import csv  # noqa: PLC0415

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols + pcols)
    for i in range(len(values)):
        w.writerow([_py(v) for v in values[i]] + ([f"{float(v):.6g}" for v in probs[i]] if probs is not None else []))
    return buf.getvalue()


def _py(v):
    return v.item() if hasattr(v, "item") else v
