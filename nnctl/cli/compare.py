"""``nnctl compare RUN_OR_CKPT ...``: final and best loss and metrics of several runs in one table."""

from __future__ import annotations

import math

import typer


def summarize(history: dict) -> dict:
    """{name: {final, best, best_epoch}} for loss, val_loss and every metric.

    best = min over epochs for losses and errors, max for accuracy-like metrics
    (``nnctl.metrics.higher_is_better``); NaN/inf epochs are ignored; epochs count from 1.
    """
    from nnctl.metrics import higher_is_better
    from nnctl.plots import BOOKKEEPING

    out = {}
    for name, values in history.items():
        if name.removeprefix("val_") in BOOKKEEPING:
            continue
        finite = [(i + 1, float(v)) for i, v in enumerate(values) if v is not None and math.isfinite(float(v))]
        if not finite:
            out[name] = {"final": float(values[-1]) if values else None, "best": None, "best_epoch": None}
            continue
        pick = max if higher_is_better(name) else min
        best_epoch, best = pick(finite, key=lambda p: p[1])
        out[name] = {"final": float(values[-1]), "best": best, "best_epoch": best_epoch}
    return out


def _columns(runs: list[dict]) -> list[str]:
    """Quantities in a stable order: loss, val_loss, then each metric followed by its val_ twin."""
    bases: list[str] = []
    for r in runs:
        for name in r["quantities"]:
            base = name.removeprefix("val_")
            if base not in bases:
                bases.append(base)
    bases.sort(key=lambda b: b != "loss")
    present = {n for r in runs for n in r["quantities"]}
    return [n for b in bases for n in (b, f"val_{b}") if n in present]


def _expand(target: str) -> list[str]:
    """A tune folder (``nnctl tune``'s tune.json inside) stands for the run folders of its trials."""
    import json
    import pathlib

    state = pathlib.Path(target) / "tune.json"
    if not state.is_file():
        return [target]
    from nnctl.errors import CheckpointError

    try:
        trials = json.loads(state.read_text(encoding="utf-8"))["trials"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{state}: unreadable tune state ({exc})") from None
    found = [
        str(t["run_dir"])
        for t in trials
        if t.get("run_dir") and (pathlib.Path(t["run_dir"]) / "metrics.jsonl").is_file()
    ]
    if not found:
        raise CheckpointError(f"{target}: a tune folder with no finished trial yet")
    return found


def register(app: typer.Typer, reports_errors) -> None:
    @app.command()
    @reports_errors
    def compare(
        targets: list[str] = typer.Argument(..., help="checkpoints (.h5), run folders or tune folders (every trial)"),
        json_: bool = typer.Option(False, "--json", help="one JSON object on stdout"),
    ):
        """Compare runs: epochs, checkpoint epoch, final and best value of the loss and each metric."""
        from nnctl.cli.output import emit_json, fmt, table
        from nnctl.cli.plot import load_run

        runs = []
        for target in [t for given in targets for t in _expand(given)]:
            run = load_run(target)
            runs.append(
                {
                    "run": run["run"],
                    "epochs": run["epochs"],
                    "checkpoint_epoch": run["checkpoint_epoch"],
                    "quantities": summarize(run["history"]),
                }
            )
        if json_:
            emit_json({"runs": runs})
            return
        columns = _columns(runs)
        header = ["run", "epochs", "ckpt epoch"]
        for name in columns:
            header += [name, f"best {name}"]
        rows = []
        for r in runs:
            row = [r["run"], r["epochs"], r["checkpoint_epoch"] if r["checkpoint_epoch"] is not None else "-"]
            for name in columns:
                q = r["quantities"].get(name)
                if q is None:
                    row += ["-", "-"]
                    continue
                row.append("-" if q["final"] is None else q["final"])
                row.append("-" if q["best"] is None else f"{fmt(q['best'])} @{q['best_epoch']}")
            rows.append(row)
        table(rows, header)
