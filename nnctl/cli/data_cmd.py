"""``nnctl data convert``: a numeric CSV to an HDF5 file (x, y) that training streams per batch."""

from __future__ import annotations

import typer


def register(app: typer.Typer, reports_errors) -> None:
    data_app = typer.Typer(help="Prepare data files: convert a large CSV for streaming.", no_args_is_help=True)
    app.add_typer(data_app, name="data")

    @data_app.command()
    @reports_errors
    def convert(
        source: str = typer.Argument(..., help="CSV file with a header (numbers only)"),
        output: str = typer.Argument(..., help="HDF5 file to write (.h5): datasets x and y"),
        target: list[str] | None = typer.Option(None, "--target", help="target column(s) (default: the last)"),
        features: list[str] | None = typer.Option(
            None, "--feature", help="input column(s) (default: every other column)"
        ),
        dtype: str = typer.Option("float32", help="float32 or float64 inputs"),
        json_: bool = typer.Option(False, "--json", help="one JSON object on stdout"),
    ):
        """Convert a CSV, block by block (memory holds one block), to HDF5 for data.stream = "batches".

        Example: nnctl data convert big.csv big.h5 --target label
        """
        from nnctl.cli.output import emit_json, table
        from nnctl.data.convert import convert_csv
        from nnctl.errors import SpecError

        if dtype not in ("float32", "float64"):
            raise SpecError(f"--dtype: expected float32 or float64, found {dtype!r}")
        tgt = None if not target else (target[0] if len(target) == 1 else list(target))
        result = convert_csv(source, output, tgt, list(features) if features else None, dtype)
        if json_:
            emit_json(result)
            return
        table(
            [
                ["rows", result["rows"]],
                ["features", len(result["features"])],
                ["targets", ", ".join(result["targets"])],
                ["dtype", result["dtype"]],
            ],
            ["", "value"],
            title=f"{result['source']} -> {result['output']}",
        )
