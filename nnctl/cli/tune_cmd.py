"""``nnctl tune SPEC``: search the spec's ``[tune]`` space; each trial an ordinary run in the tune folder."""

from __future__ import annotations

import typer


def _shown(v) -> str | float | int:
    """A parameter value for a terminal line: numbers as they are (fmt rounds them), tables and lists as JSON."""
    import json

    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else json.dumps(v)


def register(app: typer.Typer, reports_errors) -> None:
    @app.command()
    @reports_errors
    def tune(
        spec: str = typer.Argument(..., help="spec file with a [tune] section"),
        trials: int | None = typer.Option(
            None, "--trials", "-n", min=1, max=100_000, help="trials to run (default tune.trials)"
        ),
        parallel: int | None = typer.Option(
            None,
            "--parallel",
            "-p",
            min=1,
            max=256,
            help="trials at a time, each its own process (default tune.parallel)",
        ),
        out: str | None = typer.Option(
            None, "--out", "-o", help="tune folder (default <checkpoint>.tune); again: continue it"
        ),
        set_: list[str] = typer.Option([], "--set", help="override a spec key for every trial (repeatable)"),
        device: str = typer.Option("auto", help="auto, cpu or gpu"),
        json_: bool = typer.Option(False, "--json", help="one JSON object per finished trial and a final one"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress, only the result"),
    ):
        """Search hyperparameters: trials over the spec's [tune] space, a results table, the best spec.

        Example: nnctl tune specs/tune_iris.toml --trials 12 --parallel 2   (again with --out: continues)
        """
        from nnctl import tune as tune_mod
        from nnctl.cli.output import emit_json, fmt, log, table

        def emit(event):
            kind = event["event"]
            if json_:
                if kind in ("trial", "note"):
                    emit_json(event)
                return
            if quiet:
                return
            if kind == "note":
                log(f"note: {event['message']}")
            elif kind == "trial":
                shown = "  ".join(f"{p}={fmt(_shown(v))}" for p, v in event["params"].items())
                value = event.get("objective")
                log(
                    f"trial {event['trial']}: {event['status']}  {shown}  "
                    f"objective {'-' if value is None else fmt(value)}  epochs {event.get('epochs', '-')}"
                    + (f"  ({event['message']})" if event.get("message") else "")
                )

        result = tune_mod.tune(spec, out, set_, trials, parallel, device, emit)
        if json_:
            emit_json(result)
            return
        rows = []
        best = result["best"]["trial"] if result["best"] else None
        for t in result["trials"]:
            mark = "*" if t["trial"] == best else ""
            rows.append(
                [
                    f"{t['trial']}{mark}",
                    t["status"],
                    *(_shown(v) for v in t["params"].values()),
                    "-" if t[result["objective"]] is None else t[result["objective"]],
                    t["epochs"] if t["epochs"] is not None else "-",
                    "-" if t["seconds"] is None else f"{t['seconds']:.1f}",
                ]
            )
        names = list(result["trials"][0]["params"]) if result["trials"] else []
        table(
            rows,
            ["trial", "status", *names, result["objective"], "epochs", "seconds"],
            title=f"{len(rows)} trials, {result['sampler']} search, {result['mode']} {result['objective']} (* best)",
        )
        print(
            f"best trial {best}: {result['objective']} {fmt(result['best']['objective'])}  spec {result['best_spec']}"
        )
        print(f"results {result['results']}" + (f"  plot {result['plot']}" if result["plot"] else ""))
