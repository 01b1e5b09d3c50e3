"""``nnctl train SPEC --k-fold K``: K runs with fold i held out in run i, then the mean and std of each metric."""

from __future__ import annotations


def train_folds(
    s: dict,
    k: int,
    device: str,
    json_: bool,
    quiet: bool,
    init_from: str | None = None,
    resume: str | None = None,
    distributed: bool = False,
) -> None:
    """Run the folds through ``run.train`` and print each fold's line and the summary (or JSON lines)."""
    import typer

    from nnctl import kfold, run
    from nnctl.cli.output import emit_json, fmt, log, table

    if resume is not None or distributed:
        raise typer.BadParameter("cannot be combined with --resume or --distributed", param_hint="--k-fold")

    def emit(event):
        if json_:
            emit_json(event)
        elif quiet:
            return
        elif event["event"] == "done":
            shown = "  ".join(f"{m} {fmt(v)}" for m, v in event["metrics"].items() if m.startswith("val_"))
            log(f"fold {event['fold']}/{event['folds']}: {event['checkpoint']}  epochs {event['epochs_run']}  {shown}")
        elif event["event"] == "note":
            log(event["message"])

    def train_one(spec, **kw):
        done = run.train(spec, **kw)
        kw["emit"](done)
        return done

    result = kfold.cross_validate(s, k, train_one, emit=emit, device=device, init_from=init_from)
    if json_:
        emit_json(result)
        return
    names = [m for m in result["mean"] if m.startswith("val_")] or list(result["mean"])
    rows = [
        [f"fold {f['fold']}", f["validation_samples"], f["weights_epoch"], *[f["metrics"].get(m, "-") for m in names]]
        for f in result["folds"]
    ]
    rows += [["mean", "", "", *[result["mean"][m] for m in names]], ["std", "", "", *[result["std"][m] for m in names]]]
    table(
        rows,
        ["", "val samples", "epoch", *names],
        title=f"{k}-fold cross-validation ({'stratified, ' if result['stratified'] else ''}seed {result['seed']})",
    )
    print(f"summary {result['run_dir']}")
