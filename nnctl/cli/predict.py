"""``nnctl predict CHECKPOINT [INPUT|-]``: predictions for new inputs, as CSV, JSON lines or .npy."""

from __future__ import annotations

import io
import json
import sys

import typer


def register(app: typer.Typer, reports_errors) -> None:
    @app.command()
    @reports_errors
    def predict(
        checkpoint: str = typer.Argument(..., help="checkpoint written by nnctl train"),
        input_: str = typer.Argument(
            "-",
            metavar="[INPUT|-]",
            help="image file or folder, IDX, .npy/.npz/.h5, CSV with a header, JSON lines, text, or - for stdin",
        ),
        output: str = typer.Option(
            "-",
            "--output",
            "-o",
            help="file, or - for stdout; segmentation models: a folder (masks/) gets one mask PNG per input",
        ),
        format_: str = typer.Option("csv", "--format", "-f", help="csv, jsonl or npy"),
        proba: bool = typer.Option(False, "--proba", help="add one probability column per class"),
        top_k: int | None = typer.Option(
            None, "--top-k", help="add the K most likely classes and their probabilities (classifiers)"
        ),
        preprocessed: bool = typer.Option(
            False,
            "--preprocessed",
            help="inputs are already rescaled and normalised: do not apply the checkpoint's preprocessing again",
        ),
        reconstruct: bool = typer.Option(
            False,
            "--reconstruct",
            help="autoencoders (data.target = 'input'): the reconstructions, in "
            "the input's units (their default output)",
        ),
        embed: str | None = typer.Option(
            None,
            "--embed",
            metavar="LAYER",
            help="the named layer's outputs instead (e.g. an autoencoder's bottleneck codes)",
        ),
        score: bool = typer.Option(
            False,
            "--score",
            help="autoencoders: each row's reconstruction error, and anomaly true/false "
            "when the checkpoint stores a threshold (then the default output)",
        ),
        device: str = typer.Option("auto", help="auto, cpu or gpu"),
    ):
        """Predict with a checkpoint: labels for classifiers (as in the training data), values for regression.

        Example: nnctl predict runs/mnist.h5 digits/ --top-k 3
        """
        from nnctl import backend as B
        from nnctl import run
        from nnctl.data.inputs import read_inputs_named
        from nnctl.errors import SpecError

        if format_ not in ("csv", "jsonl", "npy"):
            raise SpecError(f"--format: expected csv, jsonl or npy, found {format_!r}")
        if top_k is not None and top_k < 1:
            raise SpecError(f"--top-k: expected a positive integer, found {top_k}")
        if top_k is not None and format_ == "npy":
            raise SpecError("--top-k: needs --format csv or jsonl (npy holds one array)")
        if reconstruct and embed is not None:
            raise SpecError("--embed: expected either --reconstruct or --embed, found both")
        B.keep_freed_memory()  # the process's malloc settings are the application's to choose (backend doc)
        restored = run.restore(checkpoint, device)  # a bad checkpoint fails before stdin is read
        ck, model, prep, spec = restored
        from nnctl.multi_spec import is_multi

        if is_multi(spec):  # named inputs or outputs: one column group or key per output
            from nnctl.cli import predict_named

            predict_named.check_flags(checkpoint, format_, top_k, preprocessed, reconstruct, embed, score)
            data = predict_named.render(run.predict_named(restored, input_), format_, proba)
            _write(output, data)
            return
        from nnctl.data import reconstructs

        if reconstruct and not reconstructs(prep):
            raise SpecError(
                f"--reconstruct: expected an autoencoder (data.target = 'input'), found {checkpoint} trained on targets"
            )
        score = _scoring(checkpoint, restored, score, reconstruct, embed, format_)
        shaped = reconstructs(prep) or embed is not None  # values, not labels or probabilities
        if shaped and (proba or top_k is not None):
            flag = "--proba" if proba else "--top-k"
            raise SpecError(
                f"{flag}: {checkpoint} predicts {'codes' if embed else 'reconstructions'}, not class probabilities"
            )
        if prep.task == "regression" and (proba or top_k is not None):
            flag = "--proba" if proba else "--top-k"
            raise SpecError(
                f"{flag}: {checkpoint} is a regression model (loss {spec.train.loss.plain()!r}); "
                f"it predicts values, not class probabilities"
            )
        segments = prep.kind == "segmentation"
        if segments and input_ != "-":  # a segmentation split folder: its images/, not its masks
            import pathlib

            if (pathlib.Path(input_) / "images").is_dir():
                input_ = str(pathlib.Path(input_) / "images")
        from nnctl.data.input_chunks import streams

        if format_ != "npy" and not score and streams(input_, prep, spec):  # CSV or JSON lines: in chunks
            return _predict_in_chunks(restored, input_, output, format_, proba, top_k, preprocessed, embed, shaped)
        x, files = read_inputs_named(input_, prep, model.input_shape, (spec.data.x or "x", "x"))
        source = "stdin" if input_ == "-" else input_
        if prep.unseen:  # predict never fails on a new category level; it says how many it saw
            from nnctl.cli.output import log

            log(
                "note: values not seen in training, encoded as out of vocabulary: "
                + ", ".join(f"{k} {v}" for k, v in prep.unseen.items())
            )
        from nnctl.cli.progress import RowsBar

        with RowsBar("predict", enabled=True) as bar:  # stderr on a terminal only; stdout stays the results
            outputs, decoded = run.predict(
                restored, x, preprocessed=preprocessed, source=source, embed=embed, on_batch=bar.rows
            )
        from nnctl.data.masks import is_mask_folder

        if segments and embed is None and output != "-" and is_mask_folder(output):  # one mask PNG per input
            from nnctl.cli.output import log
            from nnctl.data.masks import mask_names, write_masks

            written = write_masks(output, decoded, mask_names(files, input_, len(decoded)))
            log(f"wrote {len(written)} masks to {output}")
            return
        if score:  # error per row against the stored threshold (nnctl/anomaly.py)
            from nnctl.anomaly import render_scores, scores

            data: str | bytes = render_scores(*scores(restored, x, outputs, preprocessed), format_, files)
        else:
            columns = _shaped_columns(prep, decoded, embed) if shaped else None
            data = render(outputs, decoded, prep, format_, proba, top_k, files, columns)
        _write(output, data)


def _write(output: str, data) -> None:
    if output == "-":
        (sys.stdout.buffer.write(data) if isinstance(data, bytes) else sys.stdout.write(data))
        sys.stdout.flush()
    else:
        from nnctl.checkpoint import atomic_write

        mode = "wb" if isinstance(data, bytes) else "w"
        atomic_write(output, lambda tmp: open(tmp, mode).write(data))


def _scoring(checkpoint: str, restored, score: bool, reconstruct: bool, embed, format_: str) -> bool:
    """Whether predict writes errors and anomaly flags: asked with --score, or the default of a checkpoint that
    stores an anomaly threshold (unless --reconstruct or --embed asks for values)."""
    from nnctl.anomaly import stored
    from nnctl.data import reconstructs
    from nnctl.errors import SpecError

    if score and not reconstructs(restored.prep):
        raise SpecError(
            f"--score: expected an autoencoder (data.target = 'input'), found {checkpoint} trained on targets"
        )
    if score and (reconstruct or embed is not None):
        raise SpecError(
            f"--score: expected one of --score, --reconstruct and --embed, found "
            f"{'--reconstruct' if reconstruct else '--embed'} too"
        )
    score = score or (
        reconstructs(restored.prep) and not reconstruct and embed is None and stored(restored.checkpoint) is not None
    )
    if score and format_ == "npy":
        raise SpecError(
            "--format: expected csv or jsonl for errors and anomaly flags, found npy (use "
            "--reconstruct for an array of reconstructions)"
        )
    return score


def _predict_in_chunks(
    restored, input_: str, output: str, fmt: str, proba: bool, top_k, preprocessed: bool, embed, shaped: bool
) -> None:
    """Read, predict and write CSV or JSON lines chunk by chunk (``data.input_chunks``): memory holds one
    chunk, and the first answers are written before the input ends. A file output is written atomically."""
    from nnctl import fs, run
    from nnctl.cli.output import log
    from nnctl.data.input_chunks import chunks
    from nnctl.data.splits import NonFinite

    prep = restored.prep
    source = "stdin" if input_ == "-" else input_
    if output != "-":
        fs.check_output_file(output, "predictions")

    def write_all(out) -> None:
        done = 0
        for x in chunks(input_, prep):
            try:
                outputs, decoded = run.predict(restored, x, preprocessed=preprocessed, source=source, embed=embed)
            except NonFinite as exc:  # rows are numbered from the start of the input, not of the chunk
                raise exc.shifted(done) from None
            columns = _shaped_columns(prep, decoded, embed) if shaped else None
            text = render(outputs, decoded, prep, fmt, proba, top_k, None, columns)
            out.write(text if done == 0 or fmt != "csv" else text.partition("\n")[2])  # one header
            out.flush()
            done += len(x)

    if output == "-":
        write_all(sys.stdout)
    else:
        from nnctl.checkpoint import atomic_write

        def into(tmp) -> None:
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                write_all(f)

        atomic_write(output, into)
    if prep.unseen:
        log(
            "note: values not seen in training, encoded as out of vocabulary: "
            + ", ".join(f"{k} {v}" for k, v in prep.unseen.items())
        )


def _columns(prep, width: int) -> list[str]:
    """Names of the ``width`` prediction columns: the target's names for regression (``price``; ``price_1``...
    for several steps of one target), else prediction[_i]."""
    names = prep.target_names if prep.task == "regression" else []
    if names and len(names) == width:
        return list(names)
    if len(names) == 1:
        return [f"{names[0]}_{i + 1}" for i in range(width)]
    return ["prediction"] if width == 1 else [f"prediction_{i}" for i in range(width)]


def _shaped_columns(prep, values, embed: str | None) -> list[str]:
    """Columns of codes (``code_0``... after the layer) or reconstructions (the input's CSV columns, else
    ``x_0``...), one per value of a flattened row."""
    import math

    width = math.prod(values.shape[1:])
    if embed is None and len(prep.feature_names) == width:
        return list(prep.feature_names)
    return [f"{embed or 'x'}_{i}" for i in range(width)]


def _class_names(prep, outputs):
    if prep.classes is not None:
        return [str(c) for c in prep.classes]
    return [str(i) for i in range(outputs.shape[-1])]


def _probabilities(prep, outputs):
    if prep.task == "binary" and outputs.shape[-1] == 1:
        p1 = outputs.reshape(len(outputs))
        import numpy as np

        return np.stack([1 - p1, p1], axis=1)
    return outputs


def _top_k(prep, probs, k: int):
    """(labels, probabilities), each (N, k), most likely first; the names of their columns."""
    import numpy as np

    from nnctl.errors import SpecError

    if probs.ndim != 2:
        raise SpecError("--top-k: the model predicts several steps per row; use --proba")
    if k > probs.shape[1]:
        raise SpecError(f"--top-k: expected at most {probs.shape[1]} (the number of classes), found {k}")
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    names = np.array(_class_names(prep, probs), dtype=object)
    cols = [c for i in range(1, k + 1) for c in (f"top{i}", f"top{i}_proba")]
    return names[order], np.take_along_axis(probs, order, axis=1), cols


def render(outputs, decoded, prep, fmt: str, proba: bool, top_k: int | None = None, files=None, columns=None):
    """Predictions as CSV, JSON lines or .npy bytes; image inputs lead each row with their file; ``columns``
    names the values of a flattened row instead of the target's names."""
    import numpy as np

    if fmt == "npy":
        buf = io.BytesIO()
        np.save(buf, decoded if not proba else outputs)
        return buf.getvalue()
    values = decoded.reshape(len(decoded), -1)
    cols = columns or _columns(prep, values.shape[1])
    probs = _probabilities(prep, outputs) if (proba and prep.task != "regression") else None
    pcols = []
    if probs is not None:
        names = _class_names(prep, probs)
        if probs.ndim > 2:  # one distribution per output step: proba_<step>_<class>
            pcols = [f"proba_{t}_{c}" for t in range(probs.shape[1]) for c in names]
            probs = probs.reshape(len(probs), -1)
        else:
            pcols = [f"proba_{c}" for c in names]
    top = _top_k(prep, _probabilities(prep, outputs), top_k) if top_k else None
    lead = ["file"] if files is not None else []
    if fmt == "jsonl":
        lines = []
        for i in range(len(values)):
            row = {"file": files[i]} if files is not None else {}
            row.update({c: _py(v) for c, v in zip(cols, values[i])})
            if top is not None:
                for j in range(top_k):
                    row.update({f"top{j + 1}": _py(top[0][i, j]), f"top{j + 1}_proba": float(top[1][i, j])})
            if probs is not None:
                row.update({c: float(v) for c, v in zip(pcols, probs[i])})
            lines.append(json.dumps(row))
        return "".join(line + "\n" for line in lines)
    import csv

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(lead + cols + (top[2] if top is not None else []) + pcols)
    for i in range(len(values)):
        w.writerow(
            ([files[i]] if files is not None else [])
            + [_py(v) for v in values[i]]
            + (
                [c for j in range(top_k) for c in (_py(top[0][i, j]), f"{float(top[1][i, j]):.6g}")]
                if top is not None
                else []
            )
            + ([f"{float(v):.6g}" for v in probs[i]] if probs is not None else [])
        )
    return buf.getvalue()


def _py(v):
    return v.item() if hasattr(v, "item") else v
