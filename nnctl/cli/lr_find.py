"""``nnctl lr-find SPEC``: a learning-rate range test; the loss-vs-rate curve (PNG and terminal) and a suggested rate."""

from __future__ import annotations

import os

import typer


def register(app: typer.Typer, reports_errors) -> None:
    @app.command("lr-find")
    @reports_errors
    def lr_find(
        spec: str = typer.Argument(..., help="spec file (.toml, .yaml, .json)"),
        set_: list[str] = typer.Option([], "--set", help="override a spec key: train.batch_size=64 (repeatable)"),
        start: float = typer.Option(1e-7, min=0.0, help="first learning rate of the sweep"),
        end: float = typer.Option(10.0, min=0.0, help="last learning rate of the sweep"),
        steps: int = typer.Option(200, min=10, max=100_000, help="optimizer steps in the sweep"),
        output: str | None = typer.Option(
            None, "--output", "-o", help="PNG of the curve (default: <checkpoint>.lr_find.png)"
        ),
        no_png: bool = typer.Option(False, "--no-png", help="write no PNG"),
        device: str = typer.Option("auto", help="auto, cpu or gpu"),
        json_: bool = typer.Option(False, "--json", help="one JSON object on stdout (rates, losses, suggestion)"),
        distributed: bool = typer.Option(
            False, "--distributed", help="batches shared over MPI ranks (automatic under mpiexec or srun)"
        ),
    ):
        """Sweep the learning rate exponentially for a few hundred steps and suggest one; no checkpoint is written.

        Example:
          nnctl lr-find specs/digits_mlp.toml --steps 150
          nnctl train specs/digits_mlp.toml --set train.optimizer.learning_rate=0.003
        """
        from nnctl import fs
        from nnctl import lr_find as finder
        from nnctl import spec as spec_mod
        from nnctl.cli.output import emit_json
        from nnctl.cli.train import _connect, _guard

        world = _connect(device, distributed)  # None unless launched by mpiexec/srun or --distributed
        s = spec_mod.load(spec, list(set_))
        png = None
        if not no_png:
            png = os.path.abspath(output) if output else str(s.output.checkpoint).removesuffix(".h5") + ".lr_find.png"
            fs.check_output_file(png, "lr-find plot")
        with _guard(world):  # one rank fails: MPI_Abort them all
            result = finder.lr_find(s, device, start, end, steps, strategy=world.strategy() if world else None)
        if world is not None and world.rank != 0:  # one voice: rank 0 prints and writes the plot
            return
        if png:
            finder.plot_png(result, png)
        result["png"] = png
        if json_:
            emit_json(result)
            return
        print(finder.terminal_plot(result))
        tail = " (stopped early: the loss diverged)" if result["stopped_early"] else ""
        suggestion = f"{result['suggestion']:.3g}" if result["suggestion"] else "none (the sweep was too short)"
        print(
            f"suggested learning_rate {suggestion}  after {result['steps']} steps from {start:g} to "
            f"{result['rates'][-1]:.3g}{tail}" + (f"  plot {png}" if png else "")
        )
