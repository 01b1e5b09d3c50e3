"""``nnctl export CHECKPOINT --format onnx|keras``: the trained model in a file other tools load."""

from __future__ import annotations

import typer


def register(app: typer.Typer, reports_errors) -> None:
    @app.command()
    @reports_errors
    def export(
        checkpoint: str = typer.Argument(..., help="checkpoint written by nnctl train"),
        format_: str = typer.Option("onnx", "--format", "-f", help="onnx (needs nnctl[onnx]) or keras (.keras)"),
        output: str | None = typer.Option(
            None, "--output", "-o", help="file to write (default: the checkpoint with .onnx or .keras)"
        ),
        opset: int = typer.Option(17, "--opset", help="ONNX opset, 13 to 21"),
        json_: bool = typer.Option(False, "--json", help="one JSON object on stdout"),
    ):
        """Export a checkpoint; the ONNX graph includes the checkpoint's preprocessing and outputs what
        predict --proba prints (values for regression). A layer ONNX cannot express is refused by name.

        Example: nnctl export runs/iris.h5 --format onnx --output iris.onnx
        """
        from nnctl.cli.output import emit_json
        from nnctl.errors import SpecError

        if format_ == "onnx":
            from nnctl.interop.onnx_export import export_onnx

            result = export_onnx(checkpoint, output, opset)
        elif format_ == "keras":
            from nnctl.interop.keras_export import export_keras

            result = export_keras(checkpoint, output)
        else:
            raise SpecError(f"--format: expected onnx or keras, found {format_!r}")
        if json_:
            emit_json(result)
            return
        import sys

        sys.stderr.write(f"wrote {result['output']} ({result['format']})\n")
