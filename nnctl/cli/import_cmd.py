"""``nnctl import MODEL``: a Keras model file (.keras or legacy .h5) -> an nnctl spec and checkpoint."""

from __future__ import annotations

import typer


def register(app: typer.Typer, reports_errors) -> None:
    @app.command("import")
    @reports_errors
    def import_(
        model: str = typer.Argument(..., help="Keras 3 .keras archive or legacy Keras .h5 model"),
        output: tuple[str, str] | None = typer.Option(
            None,
            "--output",
            "-o",
            metavar="SPEC CKPT",
            help="spec file (.toml, .yaml or .json) and checkpoint to write (default: beside MODEL)",
        ),
        json_: bool = typer.Option(False, "--json", help="one JSON object on stdout"),
    ):
        """Import a Keras model: only its JSON config and HDF5 weights are read (a Lambda layer is refused).
        A weights-only file (keras.applications) goes in a spec's model.init_from instead.

        Example: nnctl import model.keras --output model.toml model.h5
        """
        import sys

        from nnctl.cli.output import emit_json
        from nnctl.interop.keras_import import import_keras

        spec_out, ckpt_out = output if output else (None, None)
        result = import_keras(model, spec_out, ckpt_out)
        if json_:
            emit_json(result)
            return
        sys.stderr.write(
            f"wrote {result['spec']} and {result['checkpoint']} ({result['layers']} layers, "
            f"{result['arrays']} arrays)\n"
        )
