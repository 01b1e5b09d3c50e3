"""``nnctl init DATA``: write a commented starter spec for a data file that trains as written."""

from __future__ import annotations

import pathlib

import typer


def register(app: typer.Typer, reports_errors) -> None:
    @app.command()
    @reports_errors
    def init(
        data: str = typer.Argument(..., help="CSV file, .npz/.h5 arrays, IDX file or image folder"),
        target: str | None = typer.Option(None, help="CSV: the column to predict (default: the last)"),
        output: str = typer.Option("spec.toml", "--output", "-o", help="spec file to write; - for stdout"),
        force: bool = typer.Option(False, "--force", help="overwrite an existing output file"),
    ):
        """Look at a data file and write a commented starter spec (task, shapes, scaling, a small network)."""
        from nnctl.errors import SpecError
        from nnctl.fs import atomic_write
        from nnctl.starter import starter_spec

        if output == "-":
            # printed specs are read from where the command ran, so paths are relative to it
            print(starter_spec(data, pathlib.Path.cwd(), target, data), end="")
            return
        out = pathlib.Path(output)
        if out.exists() and not force:
            raise SpecError(f"{out}: already exists; pass --force to overwrite it")
        if out.suffix.lower() != ".toml":
            raise SpecError(f"{out}: init writes TOML; use a .toml file name")
        text = starter_spec(data, out.resolve().parent, target, data, spec_name=str(out))
        atomic_write(out, lambda tmp: pathlib.Path(tmp).write_text(text, encoding="utf-8"))
        print(out)
