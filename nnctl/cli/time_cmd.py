"""``nnctl time SPEC``: forward and backward time of every layer and of a whole training step (``caffe time``)."""

from __future__ import annotations

import typer


def register(app: typer.Typer, reports_errors) -> None:
    @app.command("time")
    @reports_errors
    def time_(
        spec: str = typer.Argument(..., help="spec file"),
        batch: int | None = typer.Option(
            None, "--batch", min=1, max=1_000_000, help="samples per step (default: train.batch_size)"
        ),
        iterations: int = typer.Option(20, "--iterations", min=1, max=1_000_000, help="timed steps"),
        warmup: int = typer.Option(3, "--warmup", min=0, max=10_000, help="untimed steps first"),
        device: str = typer.Option("auto", help="auto, cpu or gpu"),
        set_: list[str] = typer.Option([], "--set", help="override a spec key (repeatable)"),
        json_: bool = typer.Option(False, "--json", help="JSON on stdout"),
    ):
        """Time every layer's forward and backward pass and the whole training step on synthetic batches of the
        spec's shapes; reports milliseconds per step and samples/s.

        Example: nnctl time specs/mnist_cnn.toml --batch 64 --iterations 10 --device cpu
        """
        from nnctl import backend as B
        from nnctl import losses, optimizers
        from nnctl import spec as spec_mod
        from nnctl.cli.inspect_cmds import model_from_spec
        from nnctl.cli.output import emit_json, table
        from nnctl.timing import time_model
        from nnctl.train import Trainer

        s = spec_mod.load(spec, set_)
        from nnctl.multi_spec import refuse_named

        refuse_named(s, "time")
        chosen = B.use(device)
        B.keep_freed_memory()  # as nnctl train does, so the times match training's
        model = model_from_spec(s)
        model.to_device()
        loss = losses.get(s.train.loss.type, **s.train.loss.params)
        optimizer = optimizers.get(s.train.optimizer.type, **s.train.optimizer.params)
        out_units = model.output_shape[-1] if not isinstance(model.output_shape, list) else 1
        trainer = Trainer(model, loss, optimizer, s.train, loss.task, max(int(out_units), 2), s.seed)
        size = s.train.batch_size
        n = batch or (int(size) if not isinstance(size, str) else 32)
        result = {"spec": spec, "device": chosen, **time_model(model, trainer, n, iterations, warmup, s.seed)}
        if json_:
            emit_json(result)
            return
        step = result["step_ms"]
        print(
            f"{spec}: {chosen}, batch {n}, {iterations} steps: {step:.3f} ms per step "
            f"({result['samples_per_second']:,.0f} samples/s)"
        )
        rows = [
            [
                r["name"],
                r["type"],
                f"{r['forward_ms']:.3f}",
                f"{r['backward_ms']:.3f}",
                f"{100 * r['total_ms'] / step:.1f}" if step > 0 else "-",
            ]
            for r in result["layers"]
        ]
        for part in ("loss", "regularization", "optimizer", "batch", "other"):
            if f"{part}_ms" in result:
                ms = result[f"{part}_ms"]
                rows.append([f"({part})", "", f"{ms:.3f}", "", f"{100 * ms / step:.1f}" if step > 0 else "-"])
        table(rows, ["layer", "type", "forward ms", "backward ms", "% of step"])
        print(f"Forward {result['forward_ms']:.3f} ms  Backward {result['backward_ms']:.3f} ms  Step {step:.3f} ms")
