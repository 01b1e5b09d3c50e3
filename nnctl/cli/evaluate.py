"""``nnctl evaluate CHECKPOINT``: loss and every metric on the spec's test set or on --data."""

from __future__ import annotations

from typing import Optional

import typer


def register(app: typer.Typer, reports_errors) -> None:
    @app.command()
    @reports_errors
    def evaluate(
        checkpoint: str = typer.Argument(..., help="checkpoint written by nnctl train"),
        data: Optional[str] = typer.Option(None, help="labelled data of any kind training reads: CSV, .npz/.h5, "
                                                      "IDX, image folder... (default: the spec's data.test)"),
        preprocessed: bool = typer.Option(False, "--preprocessed",
                                          help="--data inputs are already rescaled and normalised"),
        device: str = typer.Option("auto", help="auto, cpu or gpu"),
        json_: bool = typer.Option(False, "--json", help="one JSON object on stdout"),
        confusion_matrix: Optional[str] = typer.Option(None, "--confusion-matrix",
                                                        help="also write the confusion matrix to this PNG"),
    ):
        """Evaluate a checkpoint: loss and every metric of its spec."""
        from nnctl import run  # noqa: PLC0415
        from nnctl.cli.output import emit_json, table  # noqa: PLC0415

        from nnctl.gan_checkpoint import refuse_gan  # noqa: PLC0415

        refuse_gan(checkpoint, "evaluate")
        result = run.evaluate(checkpoint, data, device, preprocessed=preprocessed)
        if confusion_matrix:  # the PNG path joins the result: a row of the table, a key of --json
            from nnctl.plots import confusion_from_checkpoint  # noqa: PLC0415

            result["confusion_matrix"] = confusion_from_checkpoint(checkpoint, data, confusion_matrix,
                                                                   device)["confusion_matrix"]
        if json_:
            emit_json(result)
            return
        rows = [[k, v] for k, v in result.items() if k not in ("checkpoint", "data")]
        table(rows, ["metric", "value"], title=f"{result['checkpoint']} on {result['data']}")
