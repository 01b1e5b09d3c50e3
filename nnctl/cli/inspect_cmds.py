"""``nnctl check``, ``nnctl summary`` and ``nnctl info``: look at a spec, a model or the machine."""

from __future__ import annotations

import pathlib

import typer


def layer_table(model) -> list[dict]:
    """One row per node: name, type, output shape, parameters, trainable (like Keras's summary)."""
    rows = []
    for n in model.nodes:
        t = type(n.layer).__name__
        if n.activation is not None:
            t += f" ({n.activation.activation})"
        shape = n.output_shape
        out = [[None, *s] for s in shape] if isinstance(shape, list) else [None, *shape]  # null in JSON
        rows.append({"name": n.name, "type": t, "output_shape": out, "params": n.layer.param_count(),
                     "trainable": bool(n.layer.trainable),
                     "inputs": [f"{a}" + (f":{b}" if b is not None else "") for a, b in n.refs]})
    return rows


def _model_from_spec(spec, need_data: bool):
    from nnctl.build import build_model  # noqa: PLC0415
    from nnctl.run import model_for_data  # noqa: PLC0415

    if spec["model"].get("input_shape") and not need_data:
        return build_model(spec, tuple(spec["model"]["input_shape"]), spec["seed"])
    from nnctl.data import load_dataset  # noqa: PLC0415

    return model_for_data(spec, load_dataset(spec, with_test=False))


def _print_summary(title, model, json_):
    from nnctl.cli.output import emit_json, table  # noqa: PLC0415

    rows = layer_table(model)
    trainable, frozen = model.param_count()
    totals = {"total_params": trainable + frozen, "trainable_params": trainable, "non_trainable_params": frozen}
    if json_:
        emit_json({"model": title, "input_shape": [None, *model.input_shape], "layers": rows, **totals})
        return
    table([[r["name"], r["type"], str(tuple(r["output_shape"])) if not isinstance(r["output_shape"][0], list)
            else " ".join(str(tuple(s)) for s in r["output_shape"]), r["params"], "yes" if r["trainable"] else "no"]
           for r in rows], ["layer", "type", "output shape", "params", "trainable"], title=title)
    print(f"Total params: {totals['total_params']:,}  Trainable: {trainable:,}  Non-trainable: {frozen:,}")


def register(app: typer.Typer, reports_errors) -> None:
    @app.command()
    @reports_errors
    def check(spec: str = typer.Argument(..., help="spec file"),
              set_: list[str] = typer.Option([], "--set", help="override a spec key (repeatable)"),
              json_: bool = typer.Option(False, "--json", help="JSON on stdout")):
        """Validate a spec and infer every layer's output shape and parameter count, without training."""
        from nnctl import spec as spec_mod  # noqa: PLC0415

        s = spec_mod.load(spec, set_)
        if _gan_summaries(s, f"{spec}: valid", json_):
            return
        needs_data = any(_needs_data(e) for e in s["model"]["layers"])
        model = _model_from_spec(s, needs_data)
        _print_summary(f"{spec}: valid", model, json_)

    @app.command()
    @reports_errors
    def summary(target: str = typer.Argument(..., help="spec file or checkpoint"),
                json_: bool = typer.Option(False, "--json", help="JSON on stdout")):
        """The layer table (name, type, output shape, parameters, trainable) and totals."""
        if pathlib.Path(target).suffix.lower() in (".h5", ".hdf5"):
            from nnctl.checkpoint import Checkpoint  # noqa: PLC0415
            from nnctl.run import restore  # noqa: PLC0415

            if _gan_summaries(Checkpoint(target).spec, target, json_):
                return
            _, model, _, _ = restore(target, "cpu")
        else:
            from nnctl import spec as spec_mod  # noqa: PLC0415

            s = spec_mod.load(target)
            if _gan_summaries(s, target, json_):
                return
            model = _model_from_spec(s, any(_needs_data(e) for e in s["model"]["layers"]))
        _print_summary(target, model, json_)

    @app.command()
    @reports_errors
    def info(json_: bool = typer.Option(False, "--json", help="JSON on stdout")):
        """Versions of nnctl, Python, NumPy, h5py, CuPy and CUDA, the GPUs CuPy sees, and the device 'auto' picks."""
        import platform  # noqa: PLC0415

        import h5py  # noqa: PLC0415
        import numpy  # noqa: PLC0415

        from nnctl import __version__, backend  # noqa: PLC0415
        from nnctl.cli.output import emit_json  # noqa: PLC0415

        gpu = backend.info()
        out = {"nnctl": __version__, "python": platform.python_version(), "numpy": numpy.__version__,
               "h5py": h5py.__version__, **gpu}
        if json_:
            emit_json(out)
            return
        gpus = out.pop("gpus")
        for k, v in out.items():
            print(f"{k:<16}{'-' if v is None else v}")
        for i, g in enumerate(gpus):
            print(f"{f'gpu {i}':<16}{g['name']}, {g['memory_bytes'] / 2**30:.1f} GiB")


def _gan_summaries(spec: dict, title: str, json_: bool) -> bool:
    """A GAN spec or checkpoint: one table per model (generator, discriminator); False for any other."""
    from nnctl import gan  # noqa: PLC0415
    from nnctl.gan_spec import is_gan  # noqa: PLC0415

    if not is_gan(spec):
        return False
    for name, model in gan.models_for_check(spec):
        _print_summary(f"{title} ({name})", model, json_)
    return True


def _needs_data(entry: dict) -> bool:
    """An Embedding without input_dim takes it from the tokenizer, so check must read the data."""
    return entry["type"] == "Embedding" and "input_dim" not in entry
