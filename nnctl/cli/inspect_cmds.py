"""``nnctl check``, ``nnctl summary`` and ``nnctl info``: look at a spec, a model or the machine."""

from __future__ import annotations

import pathlib

import typer


def layer_table(model) -> list[dict]:
    """One row per node: name, type, output shape, parameters, forward FLOPs per sample, trainable (as Keras's)."""
    from nnctl.flops import node_flops

    rows = []
    for name, n, act in model.entries():
        t = type(n.layer).__name__
        if act is not None:
            t += f" ({act.layer.activation})"
        shape = n.output_shape
        out = [[None, *s] for s in shape] if isinstance(shape, list) else [None, *shape]  # null in JSON
        rows.append(
            {
                "name": name,
                "type": t,
                "output_shape": out,
                "params": n.layer.param_count(),
                "flops": node_flops(n, act),
                "trainable": bool(n.layer.trainable),
                "inputs": [f"{a}" + (f":{b}" if b is not None else "") for a, b in n.refs],
            }
        )
    return rows


def model_from_spec(spec, need_data: bool | None = None):
    """The spec's built model: from ``model.input_shape`` alone, or from the data when the shape or a key needs it."""
    if need_data is None:
        need_data = any(_needs_data(e) for e in spec.model.layers or [])
    from nnctl.build import build_model
    from nnctl.run import model_for_data

    if spec.model.input_shape and not need_data:
        return build_model(spec, tuple(spec.model.input_shape), spec.seed)
    from nnctl.data import load_dataset

    return model_for_data(spec, load_dataset(spec, with_test=False))


def _print_summary(title, model, json_, fmt: str = "table", output: str | None = None, memory: dict | None = None):
    from nnctl.cli.output import emit_json, table
    from nnctl.flops import CONVENTION, model_flops

    rows = layer_table(model)
    trainable, frozen = model.param_count()
    totals = {
        "total_params": trainable + frozen,
        "trainable_params": trainable,
        "non_trainable_params": frozen,
        "total_flops": model_flops(model)[1],
        "flops_convention": CONVENTION,
    }
    if fmt != "table":
        return _write_graph(rows, model, title, fmt, output)
    if json_:
        emit_json(
            {
                "model": title,
                "input_shape": [None, *model.input_shape],
                "layers": rows,
                **totals,
                **({"memory": memory} if memory is not None else {}),
            }
        )
        return
    table(
        [
            [
                r["name"],
                r["type"],
                str(tuple(r["output_shape"]))
                if not isinstance(r["output_shape"][0], list)
                else " ".join(str(tuple(s)) for s in r["output_shape"]),
                r["params"],
                "?" if r["flops"] is None else f"{r['flops']:,}",
                "yes" if r["trainable"] else "no",
            ]
            for r in rows
        ],
        ["layer", "type", "output shape", "params", "FLOPs", "trainable"],
        title=title,
    )
    print(f"Total params: {totals['total_params']:,}  Trainable: {trainable:,}  Non-trainable: {frozen:,}")
    print(f"Total FLOPs: {totals['total_flops']:,} ({CONVENTION})")
    if memory is not None:
        act = memory["activations_mib"]
        print(
            f"Training memory (MiB, {memory['dtype']}): parameters {memory['parameters_mib']:.3f}  gradients "
            f"{memory['gradients_mib']:.3f}  optimizer slots {memory['optimizer_slots_mib']:.3f}  activations "
            + (f"{act:.3f} per batch of {memory['batch_size']}" if act is not None else "? (batch_size = 'full')")
            + f"  total {memory['total_mib']:.3f}"
        )


def _write_graph(rows, model, title, fmt, output):
    """The model graph as DOT/SVG/PNG, to ``output`` or stdout (PNG only to a file or a pipe)."""
    import sys

    from nnctl.errors import OutputError
    from nnctl.graph_dot import render, to_dot

    named = {k: s for k, (s, _) in model.inputs.items()} if model.named_inputs else None
    data = render(to_dot(rows, model.input_shape, title, named), fmt)
    if output is None:
        if fmt == "png" and sys.stdout.isatty():
            raise OutputError("--format png is binary: pass --output FILE.png or redirect stdout")
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    from nnctl import fs

    fs.check_output_file(output, "graph file")
    fs.atomic_write(output, lambda tmp: pathlib.Path(tmp).write_bytes(data))


def register(app: typer.Typer, reports_errors) -> None:
    @app.command()
    @reports_errors
    def check(
        spec: str = typer.Argument(..., help="spec file"),
        set_: list[str] = typer.Option([], "--set", help="override a spec key (repeatable)"),
        print_spec: bool = typer.Option(
            False, "--print-spec", help="print the resolved spec (extends merged, --set applied) as TOML"
        ),
        json_: bool = typer.Option(False, "--json", help="JSON on stdout"),
        no_memory_check: bool = typer.Option(
            False,
            "--no-memory-check",
            help="build the model even if its training memory estimate exceeds the memory available",
        ),
    ):
        """Validate a spec and infer every layer's output shape, parameter count and FLOPs, without training.

        Example: nnctl check specs/iris_mlp.toml --set train.epochs=5 --print-spec
        """
        from nnctl import spec as spec_mod

        s = spec_mod.load(spec, set_)
        if print_spec:
            from nnctl import toml_write
            from nnctl.spec_extends import load_chain

            raw, _ = load_chain(spec, spec_mod.load_file)
            for item in set_:
                spec_mod.apply_override(raw, item)
            print(toml_write.dump(raw), end="")
            return
        if _gan_summaries(s, f"{spec}: valid", json_):
            return
        needs_data = any(_needs_data(e) for e in s.model.layers or [])
        from nnctl.memory import check_fits, training_memory

        if (
            s.model.input_shape and not needs_data and not no_memory_check and s.train.memory_check
        ):  # refused from its shapes, before a parameter is allocated
            check_fits(s, s.model.input_shape)
        model = model_from_spec(s, needs_data)

        _print_summary(f"{spec}: valid", model, json_, memory=training_memory(model, s))

    @app.command()
    @reports_errors
    def summary(
        target: str = typer.Argument(..., help="spec file or checkpoint"),
        format_: str = typer.Option("table", "--format", help="table, or the graph as dot, svg or png"),
        output: str | None = typer.Option(None, "--output", "-o", help="write the graph to this file"),
        json_: bool = typer.Option(False, "--json", help="JSON on stdout"),
    ):
        """The layer table (name, type, output shape, parameters, FLOPs, trainable) and totals, or the graph.

        Example: nnctl summary specs/resnet_small.toml --format svg --output resnet.svg
        """
        from nnctl.graph_dot import FORMATS

        if format_ not in ("table", *FORMATS):
            raise typer.BadParameter(f"expected table, dot, svg or png, found {format_!r}", param_hint="--format")
        if pathlib.Path(target).suffix.lower() in (".h5", ".hdf5"):
            from nnctl.checkpoint import Checkpoint
            from nnctl.gan_spec import is_gan
            from nnctl.inference import restore
            from nnctl.spec_model import Spec

            stored = Checkpoint(target).spec
            if is_gan(stored) and _gan_summaries(Spec.from_dict(stored, target), target, json_, format_):
                return
            _, model, _, _ = restore(target, "cpu")
        else:
            from nnctl import spec as spec_mod

            s = spec_mod.load(target)
            if _gan_summaries(s, target, json_, format_):
                return
            model = model_from_spec(s, any(_needs_data(e) for e in s.model.layers or []))
        _print_summary(target, model, json_, format_, output)

    @app.command()
    @reports_errors
    def info(json_: bool = typer.Option(False, "--json", help="JSON on stdout")):
        """Versions of nnctl, Python, NumPy, h5py, CuPy and CUDA, the GPUs CuPy sees, and the device 'auto' picks."""
        import platform

        import h5py
        import numpy

        from nnctl import __version__, backend
        from nnctl.cli.output import emit_json

        gpu = backend.info()
        out = {
            "nnctl": __version__,
            "python": platform.python_version(),
            "numpy": numpy.__version__,
            "h5py": h5py.__version__,
            **gpu,
        }
        if json_:
            emit_json(out)
            return
        gpus = out.pop("gpus")
        for k, v in out.items():
            print(f"{k:<16}{'-' if v is None else v}")
        for i, g in enumerate(gpus):
            print(f"{f'gpu {i}':<16}{g['name']}, {g['memory_bytes'] / 2**30:.1f} GiB")


def _gan_summaries(spec: dict, title: str, json_: bool, format_: str = "table") -> bool:
    """A GAN spec or checkpoint: one table per model (generator, discriminator); False for any other."""
    from nnctl import gan
    from nnctl.gan_spec import is_gan

    if not is_gan(spec):
        return False
    if format_ != "table":  # one picture holds one model
        raise typer.BadParameter(
            f"a GAN has two models; only the table format shows them, found {format_!r}", param_hint="--format"
        )
    for name, model in gan.models_for_check(spec):
        _print_summary(f"{title} ({name})", model, json_)
    return True


def _needs_data(entry: dict) -> bool:
    """An Embedding without input_dim takes it from the tokenizer, so check must read the data."""
    return entry["type"] == "Embedding" and "input_dim" not in entry
