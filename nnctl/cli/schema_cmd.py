"""``nnctl schema``: print the JSON Schema of spec files (built by ``nnctl.schema``)."""

from __future__ import annotations

import json

import typer


def register(app: typer.Typer, reports_errors) -> None:
    @app.command()
    @reports_errors
    def schema():
        """Print the JSON Schema (draft 2020-12) of spec files, for editor completion and validation.

        Example: nnctl schema > nnctl.schema.json
        """
        from nnctl.schema import spec_schema

        print(json.dumps(spec_schema(), indent=2))
