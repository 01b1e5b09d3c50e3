"""``nnctl serve CHECKPOINT``: an HTTP server that keeps the model loaded and answers predictions."""

from __future__ import annotations

import typer


def register(app: typer.Typer, reports_errors) -> None:
    @app.command()
    @reports_errors
    def serve(
        checkpoint: str = typer.Argument(..., help="checkpoint written by nnctl train"),
        host: str = typer.Option("127.0.0.1", help="address to listen on (0.0.0.0: every interface)"),
        port: int = typer.Option(8000, help="TCP port (0: any free port, printed on stderr)"),
        max_body: int = typer.Option(10 * 2**20, "--max-body", help="largest request body in bytes"),
        device: str = typer.Option("auto", help="auto, cpu or gpu"),
    ):
        """Serve predictions over HTTP: POST /predict (JSON rows or objects by feature name; ?proba=1,
        ?top_k=K), GET /health, GET /metadata. SIGTERM or Ctrl-C stops it cleanly (exit 0).

        Example: nnctl serve runs/iris.h5 --port 8000
        """
        from nnctl.serve import serve as run_server  # noqa: PLC0415

        run_server(checkpoint, host, port, max_body, device)
