"""``nnctl plot CHECKPOINT|RUN_DIR``: training curves as a PNG (--output) or as text in the terminal."""

from __future__ import annotations

import pathlib

import typer


def load_run(target: str) -> dict:
    """History and checkpoint epoch of a checkpoint (.h5) or a run folder (metrics.jsonl, summary.json)."""
    import json

    from nnctl.errors import CheckpointError

    p = pathlib.Path(target)
    if p.is_dir():
        if not (p / "metrics.jsonl").is_file():
            raise CheckpointError(
                f"{p}: not a run folder (no metrics.jsonl); pass a checkpoint or the "
                f"<checkpoint>.run folder nnctl train writes"
            )
        from nnctl.runlog import read_history

        try:
            history = read_history(p)
        except (ValueError, AttributeError) as exc:
            raise CheckpointError(f"{p / 'metrics.jsonl'}: unreadable ({exc})") from None
        epochs = _epochs(history)
        ckpt_epoch = epochs
        summary = p / "summary.json"
        if summary.is_file():
            try:
                ckpt_epoch = json.loads(summary.read_text()).get("checkpoint_epoch", epochs)
            except json.JSONDecodeError:
                pass  # the history is what matters; the summary is a convenience
        return {"run": str(target), "history": history, "epochs": epochs, "checkpoint_epoch": ckpt_epoch}
    if not p.exists():
        raise CheckpointError(f"{p}: not found; expected a checkpoint (.h5) or a run folder")
    from nnctl.checkpoint import Checkpoint

    ck = Checkpoint(p)
    history = {k: [float(v) for v in vals] for k, vals in ck.history.items()}
    # the weights are the best epoch's when early stopping restored them, else the last epoch's
    ckpt_epoch = ck.best_epoch if ck.best_epoch is not None else ck.epoch
    return {"run": str(target), "history": history, "epochs": _epochs(history), "checkpoint_epoch": ckpt_epoch}


def _epochs(history: dict) -> int:
    """Epochs logged: the longest series (a GAN logs d_loss and g_loss, no "loss")."""
    return max((len(v) for v in history.values()), default=0)


def register(app: typer.Typer, reports_errors) -> None:
    @app.command()
    @reports_errors
    def plot(
        target: str = typer.Argument(..., help="checkpoint (.h5) or run folder written by nnctl train"),
        output: str | None = typer.Option(None, "--output", "-o", help="write the curves to this PNG"),
        terminal: bool = typer.Option(False, "--terminal", help="print text curves (the default without --output)"),
        width: int = typer.Option(60, help="text curves: columns of the chart"),
        height: int = typer.Option(12, help="text curves: rows of each chart"),
    ):
        """Plot loss and every metric per epoch, training and validation together."""
        from nnctl.cli.output import log
        from nnctl.errors import CheckpointError
        from nnctl.plots import plot_history, terminal_curves

        run = load_run(target)
        if not run["epochs"]:
            raise CheckpointError(f"{target}: holds no finished epoch to plot")
        if output:
            plot_history(run["history"], output, title=pathlib.Path(target).name)
            if terminal:
                log(f"wrote {output}")  # stdout carries the text curves
            else:
                print(output)
        if terminal or not output:
            print(terminal_curves(run["history"], width, height))
