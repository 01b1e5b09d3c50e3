"""``nnctl train SPEC``: train and write one checkpoint (and its run folder); ``--resume`` continues one."""

from __future__ import annotations

import contextlib
import os
from dataclasses import replace

import typer


def register(app: typer.Typer, reports_errors) -> None:
    @app.command()
    @reports_errors
    def train(
        ctx: typer.Context,
        spec: str | None = typer.Argument(
            None, help="spec file (.toml, .yaml, .json); optional with --resume CKPT", show_default=False
        ),
        out: str | None = typer.Option(None, "--out", "-o", help="checkpoint path (default: output.checkpoint)"),
        set_: list[str] = typer.Option([], "--set", help="override a spec key: train.epochs=5 (repeatable)"),
        device: str = typer.Option("auto", help="auto, cpu or gpu"),
        epochs: int | None = typer.Option(None, min=0, max=1_000_000, help="override train.epochs"),
        seed: int | None = typer.Option(None, min=0, max=2**32 - 1, help="override seed (0 to 4294967295)"),
        resume: str | None = typer.Option(
            None,
            help="continue the run saved in this checkpoint; 'auto': the "
            "newest readable checkpoint of this run, else start fresh",
        ),
        resume_weights_only: bool = typer.Option(
            False,
            "--resume-weights-only",
            help="with --resume: fine-tune from the checkpoint's weights "
            "with this run's optimizer and schedule; epochs count "
            "from 0",
        ),
        init_from: str | None = typer.Option(None, "--init-from", help="load weights by layer name first"),
        run_dir: str | None = typer.Option(None, "--run-dir", help="run folder (default beside the checkpoint)"),
        json_: bool = typer.Option(False, "--json", help="one JSON object per epoch and a final one on stdout"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress, only the result"),
        distributed: bool = typer.Option(
            False, "--distributed", help="data-parallel over MPI (automatic under mpiexec or srun)"
        ),
        k_fold: int | None = typer.Option(
            None,
            "--k-fold",
            min=2,
            max=1000,
            help="K-fold cross-validation: K runs, each validated on its held-out fold",
        ),
        force: bool = typer.Option(False, "--force", help="overwrite a checkpoint of another model at the output path"),
        no_memory_check: bool = typer.Option(
            False,
            "--no-memory-check",
            help="train even if the model's memory estimate exceeds the memory available (train.memory_check = false)",
        ),
        checkpoint_on_signal: bool = typer.Option(
            False,
            "--checkpoint-on-signal",
            help="SIGUSR1 also checkpoints at the next batch and exits 143, as SIGTERM does (SLURM --signal=USR1@90)",
        ),
    ):
        """Train the network a spec describes and write its HDF5 checkpoint.

        Example: nnctl train specs/iris_mlp.toml --resume auto   (SIGTERM: checkpoint, exit 143)
        """
        from nnctl import backend as B
        from nnctl import gan, run
        from nnctl import spec as spec_mod
        from nnctl.cli.main import click_exc
        from nnctl.cli.output import emit_json, fmt, log
        from nnctl.cli.progress import Progress
        from nnctl.errors import Interrupted, TrainingDiverged
        from nnctl.train import Hooks

        if spec is None and (resume is None or resume == "auto"):
            what = "--resume auto continues the run a SPEC names" if resume == "auto" else "Missing argument 'SPEC'."
            raise click_exc.UsageError(what, ctx)
        B.keep_freed_memory()  # the process's malloc settings are the application's to choose (backend doc)
        world = _connect(device, distributed)  # None unless launched by mpiexec/srun or --distributed
        rank = world.rank if world else 0
        if rank != 0:  # one voice: only rank 0 prints progress and results
            json_, quiet = False, True

        overrides = list(set_)
        if epochs is not None:
            overrides.append(f"train.epochs={epochs}")
        if seed is not None:
            overrides.append(f"seed={seed}")
        if checkpoint_on_signal:
            overrides.append("train.checkpoint_on_signal=true")
        if no_memory_check:
            overrides.append("train.memory_check=false")
        if resume_weights_only and resume is None:
            raise click_exc.UsageError("--resume-weights-only needs --resume CHECKPOINT", ctx)
        s = spec_mod.load(spec, overrides) if spec is not None else run.stored_spec(str(resume), overrides)
        asked = tuple(item.partition("=")[0].strip() for item in overrides)  # asked-for changes --resume accepts
        output = s.output
        # paths given on the command line are relative to the working directory, not the spec
        if out is not None:
            output = replace(output, checkpoint=os.path.abspath(out))
        elif resume is not None and resume != "auto":  # resume in place: the run continues in its checkpoint
            output = replace(output, checkpoint=os.path.abspath(resume))
        if run_dir is not None:
            output = replace(output, run_dir=os.path.abspath(run_dir))
        s = replace(s, output=output, set_keys=asked)
        if k_fold is not None:  # K ordinary runs and their mean and std (nnctl/kfold.py)
            from nnctl.cli.kfold_cmd import train_folds

            return train_folds(s, k_fold, device, json_, quiet, init_from, resume, world is not None)
        hooks = Hooks()
        with Progress(enabled=not (quiet or json_)) as progress:
            progress.set_epochs(int(s.train.epochs))
            if progress.live:  # per-batch bars only where someone watches; no hook, no cost
                hooks.on_batch = progress.batch

            def emit(event):
                if json_:
                    emit_json(event)
                elif event["event"] == "epoch":
                    progress.epoch(event)
                elif event["event"] == "init_from" and not quiet:
                    log(
                        f"init-from {event['checkpoint']}: loaded {len(event['loaded'])} arrays"
                        + (f", skipped {', '.join(event['skipped'])}" if event["skipped"] else "")
                    )
                elif event["event"] == "note" and not quiet:
                    log(f"note: {event['message']}")
                elif not quiet and event["event"] in ("resume", "checkpoint"):
                    batch = f", batch {event['batch']}" if "batch" in event else ""
                    log(f"{event['event']}: {event['checkpoint']} (epoch {event['epoch']}{batch})")

            try:
                with _guard(world):  # one rank fails: MPI_Abort them all
                    is_gan = gan.is_gan_run(s, resume)
                    if is_gan:  # a GAN resumes whole; the asked-for changes are the supervised session's
                        s = replace(s, set_keys=())
                    if is_gan and resume_weights_only:
                        from nnctl.errors import SpecError

                        raise SpecError(
                            "--resume-weights-only: a GAN run resumes whole (its two models and "
                            "optimizers); use --resume"
                        )
                    train_fn = gan.train if is_gan else run.train  # train.mode = "gan"
                    done = train_fn(
                        s,
                        emit=emit,
                        device=device,
                        resume=resume,
                        init_from=init_from,
                        hooks=hooks,
                        is_writer=rank == 0,
                        strategy=world.strategy() if world else None,
                        **({} if is_gan else {"force": force, "weights_only": resume_weights_only}),
                    )
            except (TrainingDiverged, Interrupted) as exc:
                if getattr(exc, "checkpoint", None):  # the command that continues from what was written
                    again = continue_command(
                        spec, exc.checkpoint, set_, epochs, seed, device, run_dir, checkpoint_on_signal, no_memory_check
                    )
                    hint = (
                        "lower the learning rate (--set train.optimizer.learning_rate=...) and continue: "
                        if isinstance(exc, TrainingDiverged)
                        else "continue: "
                    )
                    exc.args = (f"{exc}; {hint}{again}",)
                raise
        if rank != 0:
            return
        if json_:
            emit_json(done)
        else:
            metrics = "  ".join(
                f"{k} {fmt(v)}" for k, v in done["metrics"].items() if k not in ("seconds", "lr", "samples_per_second")
            )
            print(
                f"checkpoint {done['checkpoint']}  epochs {done['epochs_run']}  weights of epoch "
                f"{done['weights_epoch']}  {metrics}"
            )
            if done["summary"].get("note") and not quiet:
                log(done["summary"]["note"])


def _connect(device: str, force: bool):
    """The MPI world with its device bound (every rank ends if one cannot bind), or None outside MPI."""
    from nnctl.distributed import connect  # imports mpi4py only under MPI

    world = connect(force)
    if world is not None:
        pidfile = os.environ.get("NNCTL_TEST_PIDFILE")  # tests only: each rank's pid, so a test can kill one
        if pidfile:
            with open(f"{pidfile}.{world.rank}", "w", encoding="utf-8") as f:
                f.write(f"{os.getpid()}\n")
        with _guard(world):
            world.bind_device(device)
    return world


def _guard(world):
    if world is None:
        return contextlib.nullcontext()
    from nnctl.cli.ranks import guard

    return guard(world)


def continue_command(
    spec: str | None,
    checkpoint: str,
    sets: list[str],
    epochs,
    seed,
    device: str,
    run_dir,
    checkpoint_on_signal: bool = False,
    no_memory_check: bool = False,
) -> str:
    """The ``nnctl train`` command line that resumes ``checkpoint`` in place with this run's options."""
    import shlex

    args = ["nnctl", "train", *([spec] if spec is not None else []), "--resume", checkpoint]
    for item in sets:
        args += ["--set", item]
    for flag, value in (("--epochs", epochs), ("--seed", seed), ("--run-dir", run_dir)):
        if value is not None:
            args += [flag, str(value)]
    if device != "auto":
        args += ["--device", device]
    if checkpoint_on_signal:
        args.append("--checkpoint-on-signal")
    if no_memory_check:
        args.append("--no-memory-check")
    return " ".join(shlex.quote(str(a)) for a in args)
