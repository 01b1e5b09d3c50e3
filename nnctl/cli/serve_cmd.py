"""``nnctl serve CHECKPOINT``: an HTTP server that keeps the model loaded and answers predictions."""

from __future__ import annotations

import typer


def register(app: typer.Typer, reports_errors) -> None:
    @app.command()
    @reports_errors
    def serve(
        checkpoint: str = typer.Argument(..., help="checkpoint written by nnctl train"),
        host: str = typer.Option("127.0.0.1", help="address to listen on (0.0.0.0: every interface)"),
        port: int = typer.Option(8000, help="TCP port (0: any free port; the address is printed on stderr)"),
        max_body: int = typer.Option(10 * 2**20, "--max-body", help="largest request body in bytes"),
        device: str = typer.Option("auto", help="auto, cpu or gpu"),
    ):
        """Serve predictions over HTTP: POST /predict (a JSON array of rows, or objects keyed by feature
        name; ?proba=1, ?top_k=K), GET /health, GET /metadata. SIGTERM or Ctrl-C stops it (exit 0).

        Example: nnctl serve runs/iris.h5 --port 8000
        """
        import sys

        from nnctl.cli.predict import render
        from nnctl.serve import serve as run_server

        def rows(outputs, decoded, prep, proba, top_k):  # the JSON lines `nnctl predict --format jsonl` prints
            return render(outputs, decoded, prep, "jsonl", proba, top_k)

        def ready(address):
            sys.stderr.write(
                f"serving {checkpoint} on http://{address[0]}:{address[1]} "
                f"(POST /predict, GET /health, GET /metadata)\n"
            )
            sys.stderr.flush()

        run_server(checkpoint, host, port, rows, max_body, device, ready=ready)
        sys.stderr.write("stopped\n")
