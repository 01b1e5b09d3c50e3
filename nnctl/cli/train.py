"""``nnctl train SPEC``: train and write one checkpoint (and its run folder)."""

from __future__ import annotations

import contextlib
import os
from typing import Optional

import typer


def register(app: typer.Typer, reports_errors) -> None:
    @app.command()
    @reports_errors
    def train(
        spec: str = typer.Argument(..., help="spec file (.toml, .yaml, .json)"),
        out: Optional[str] = typer.Option(None, "--out", "-o", help="checkpoint path (default: output.checkpoint)"),
        set_: list[str] = typer.Option([], "--set", help="override a spec key: train.epochs=5 (repeatable)"),
        device: str = typer.Option("auto", help="auto, cpu or gpu"),
        epochs: Optional[int] = typer.Option(None, min=0, max=1_000_000, help="override train.epochs"),
        seed: Optional[int] = typer.Option(None, min=0, max=2**32 - 1, help="override seed (0 to 4294967295)"),
        resume: Optional[str] = typer.Option(None, help="continue the run saved in this checkpoint"),
        init_from: Optional[str] = typer.Option(None, "--init-from", help="load weights by layer name first"),
        run_dir: Optional[str] = typer.Option(None, "--run-dir", help="run folder (default beside the checkpoint)"),
        json_: bool = typer.Option(False, "--json", help="one JSON object per epoch and a final one on stdout"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress, only the result"),
        distributed: bool = typer.Option(False, "--distributed",
                                         help="data-parallel over MPI (automatic under mpiexec or srun)"),
    ):
        """Train the network a spec describes and write its HDF5 checkpoint."""
        from nnctl import gan, spec as spec_mod  # noqa: PLC0415
        from nnctl.cli.output import emit_json, fmt, log  # noqa: PLC0415
        from nnctl.cli.progress import Progress  # noqa: PLC0415
        from nnctl.errors import Interrupted, TrainingDiverged  # noqa: PLC0415
        from nnctl.train import Hooks  # noqa: PLC0415
        from nnctl.distributed import setup  # noqa: PLC0415 - imports mpi4py only under MPI

        world = setup(device, force=distributed)  # None unless launched by mpiexec/srun or --distributed
        rank = world.rank if world else 0
        if rank != 0:  # one voice: only rank 0 prints progress and results
            json_, quiet = False, True

        overrides = list(set_)
        if epochs is not None:
            overrides.append(f"train.epochs={epochs}")
        if seed is not None:
            overrides.append(f"seed={seed}")
        s = spec_mod.load(spec, overrides)
        # paths given on the command line are relative to the working directory, not the spec
        if out is not None:
            s["output"]["checkpoint"] = os.path.abspath(out)
        elif resume is not None:  # resume in place: the run continues in the checkpoint it started from
            s["output"]["checkpoint"] = os.path.abspath(resume)
        if run_dir is not None:
            s["output"]["run_dir"] = os.path.abspath(run_dir)
        hooks = world.hooks if world else Hooks()
        with Progress(enabled=not (quiet or json_)) as progress:
            progress.set_epochs(int(s["train"]["epochs"]))
            if progress.live:  # per-batch bars only where someone watches; no hook, no cost
                hooks.on_batch = progress.batch

            def emit(event):
                if json_:
                    emit_json(event)
                elif event["event"] == "epoch":
                    progress.epoch(event)
                elif event["event"] == "init_from" and not quiet:
                    log(f"init-from {event['checkpoint']}: loaded {len(event['loaded'])} arrays"
                        + (f", skipped {', '.join(event['skipped'])}" if event["skipped"] else ""))
                elif not quiet and event["event"] in ("resume", "checkpoint"):
                    log(f"{event['event']}: {event['checkpoint']} (epoch {event['epoch']})")

            try:
                with world.guard() if world else contextlib.nullcontext():  # one rank fails: MPI_Abort them all
                    train_fn = gan.train_function(s, resume)  # run.train, or gan.train for train.mode = "gan"
                    done = train_fn(s, emit=emit, device=device, resume=resume, init_from=init_from,
                                    hooks=hooks, is_writer=rank == 0)
            except (TrainingDiverged, Interrupted) as exc:
                if getattr(exc, "checkpoint", None):  # the command that continues from what was written
                    again = continue_command(spec, exc.checkpoint, set_, epochs, seed, device, run_dir)
                    hint = "lower the learning rate (--set train.optimizer.learning_rate=...) and continue: " \
                        if isinstance(exc, TrainingDiverged) else "continue: "
                    exc.args = (f"{exc}; {hint}{again}",)
                raise
        if rank != 0:
            return
        if json_:
            emit_json(done)
        else:
            metrics = "  ".join(f"{k} {fmt(v)}" for k, v in done["metrics"].items() if k not in ("seconds", "lr",
                                                                                               "samples_per_second"))
            print(f"checkpoint {done['checkpoint']}  epochs {done['epochs_run']}  weights of epoch "
                  f"{done['weights_epoch']}  {metrics}")
            if done["summary"].get("note") and not quiet:
                log(done["summary"]["note"])


def continue_command(spec: str, checkpoint: str, sets: list[str], epochs, seed, device: str, run_dir) -> str:
    """The ``nnctl train`` command line that resumes ``checkpoint`` in place with this run's options."""
    import shlex  # noqa: PLC0415

    args = ["nnctl", "train", spec, "--resume", checkpoint]
    for item in sets:
        args += ["--set", item]
    for flag, value in (("--epochs", epochs), ("--seed", seed), ("--run-dir", run_dir)):
        if value is not None:
            args += [flag, str(value)]
    if device != "auto":
        args += ["--device", device]
    return " ".join(shlex.quote(str(a)) for a in args)
