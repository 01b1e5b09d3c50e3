"""Library entry points behind the CLI verbs: train a spec, evaluate and predict from a checkpoint.

They emit events (plain dicts) through ``emit`` and return results; they never print or exit.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import signal
import time

import numpy as np

from nnctl import backend as B
from nnctl import fs, losses, optimizers
from nnctl.build import build_model
from nnctl.callbacks import EarlyStopping
from nnctl.checkpoint import Checkpoint, load_into, named_from_flat, save
from nnctl.data import Dataset, load_dataset
from nnctl.data.preprocess import Preprocessor
from nnctl.errors import CheckpointError, DataError, Interrupted, SpecError, TrainingDiverged, quote
from nnctl.graph import Model
from nnctl.schedules import Schedule
from nnctl.spec import loss_config, optimizer_config
from nnctl.train import Hooks, Trainer


def _noop(event: dict) -> None:
    pass


def model_for_data(spec: dict, ds: Dataset) -> Model:
    """Build the spec's model for the dataset's input shape and check its output against the targets."""
    shape = tuple(spec["model"].get("input_shape") or ds.input_shape)
    if tuple(ds.input_shape) != shape:
        raise DataError(f"{spec['data']['train']}: samples have shape {list(ds.input_shape)} "
                        f"({_features(ds.input_shape)}), but model.input_shape is {list(shape)}")
    input_dtype = ds.x_train.dtype if ds.x_train.dtype.kind in "iu" else spec["dtype"]
    model = build_model(spec, shape, spec["seed"], ds.defaults, input_dtype=input_dtype)
    check_targets(spec, model, ds.y_train, ds.prep)
    model.check_input(ds.x_train, spec["data"]["train"])
    if ds.x_val is not None:
        validation = spec["data"].get("validation")
        model.check_input(ds.x_val, validation if isinstance(validation, str) else f"{spec['data']['train']} (validation split)")
    # what the checkpoint needs to rebuild the same model without the data
    spec["model"]["input_shape"] = list(shape)
    spec["_defaults"], spec["_input_dtype"] = dict(ds.defaults), str(np.dtype(input_dtype))
    return model


def _features(shape) -> str:
    return f"{shape[0]} features" if len(shape) == 1 else "x".join(map(str, shape))


def check_targets(spec, model: Model, y: np.ndarray, prep: Preprocessor) -> None:
    out = tuple(model.output_shape) if not isinstance(model.output_shape, list) else None
    if out is None:
        raise SpecError(f"{spec.get('_source', 'spec')}: model.layers[-1]: the last layer must have one output")
    want = out[:-1] if prep.task == "sparse" else out
    if tuple(y.shape[1:]) != want:
        last = spec["model"]["layers"][-1]["name"]
        if prep.classes is not None and prep.task in ("categorical", "sparse"):
            raise DataError(f"{spec['data']['train']}: the target has {len(prep.classes)} classes but the last layer "
                            f"({last}) has {out[-1]} units")
        raise DataError(f"{spec['data']['train']}: targets have shape {list(y.shape[1:])} per sample but the last "
                        f"layer ({last}) outputs {list(out)}")


def make_loss(spec) -> losses.Loss:
    name, kwargs = loss_config(spec["train"])
    return losses.get(name, **kwargs)


def make_optimizer(spec) -> optimizers.Optimizer:
    name, kwargs = optimizer_config(spec["train"])
    return optimizers.get(name, **kwargs)


def _weights_of(model: Model, snap: dict, shapes: dict) -> tuple[dict, dict]:
    """Named weights (flat buffer and frozen layers) and layer state of a trainer snapshot."""
    weights = named_from_flat(snap["flat_params"], model.slices, shapes)
    weights.update(snap["frozen"])
    return weights, dict(snap["model_state"])


def write_checkpoint(path, spec, trainer: Trainer, prep: Preprocessor, last: dict, weights_snap: dict,
                     best_epoch: int | None) -> None:
    """Checkpoint with ``weights_snap``'s weights for use, and ``last`` (if different) for --resume."""
    model = trainer.model
    shapes = {k: tuple(v.shape) for k, v in model.named_params().items()}
    slots = {name: named_from_flat(arr, model.slices, shapes) for name, arr in last["slots"].items()}
    weights, state = _weights_of(model, weights_snap, shapes)
    info = {k: last[k] for k in ("epoch", "schedule", "early", "data_rng", "aug_rng", "layer_rngs", "iterations")}
    info["history"] = last["history"]
    resume_weights, resume_state = _weights_of(model, last, shapes)
    name, config = optimizer_config(spec["train"])
    save(path, spec=spec, weights=weights, state=state, prep_arrays=prep.to_arrays(), history=last["history"],
         seed=spec["seed"], epoch=last["epoch"], best_epoch=best_epoch,
         optimizer={"type": name, "iterations": last["iterations"], "config": config, "slots": slots},
         resume={"weights": resume_weights, "state": resume_state, "info": info})


def snapshot_from_checkpoint(ckpt: Checkpoint, trainer: Trainer) -> dict:
    """The --resume state stored in a checkpoint, in the trainer's snapshot form."""
    if ckpt.resume is None:
        raise SpecError(f"{ckpt.path}: holds no resume state")
    model = trainer.model
    info = ckpt.resume["info"]
    load_into(model, ckpt.resume["weights"], ckpt.resume["state"], str(ckpt.path))
    slots = {}
    for slot, named in ckpt.optimizer["slots"].items():
        flat = np.zeros(model.flat_params.size, dtype=model.dtype)
        for key, sl in model.slices.items():
            if key not in named:
                raise SpecError(f"{ckpt.path}: /optimizer/slots/{slot}/{key} is missing")
            flat[sl] = named[key].ravel()
        slots[slot] = flat
    snap = trainer.snapshot()
    snap.update(slots=slots, iterations=info["iterations"], epoch=info["epoch"], history=info["history"],
                schedule=info["schedule"], early=info["early"], data_rng=info["data_rng"], aug_rng=info["aug_rng"],
                layer_rngs=info["layer_rngs"])
    return snap


def model_differences(a: dict, b: dict) -> list[str]:
    """What differs between two specs' models (layers, input shape, dtype)."""
    out = []
    if a.get("dtype") != b.get("dtype"):
        out.append(f"dtype {b.get('dtype')!r} -> {a.get('dtype')!r}")
    if a["model"].get("input_shape") != b["model"].get("input_shape"):
        out.append(f"model.input_shape {b['model'].get('input_shape')} -> {a['model'].get('input_shape')}")
    la, lb = a["model"]["layers"], b["model"]["layers"]
    if len(la) != len(lb):
        out.append(f"{len(lb)} layers -> {len(la)} layers")
    for i, (x, y) in enumerate(zip(la, lb)):
        if x != y:
            keys = sorted(k for k in set(x) | set(y) if x.get(k) != y.get(k))
            out.append(f"model.layers[{i}]: " + ", ".join(f"{k} {y.get(k)!r} -> {x.get(k)!r}" for k in keys))
    return out


class Signals:
    """SIGINT stops after the current batch (exit 130); SIGUSR1 asks for a checkpoint and goes on."""

    def __init__(self):
        self.stop = False
        self.save_requested = False

    @contextlib.contextmanager
    def installed(self):
        old = {}

        def on_int(signum, frame):
            if self.stop:  # a second Ctrl-C: stop now
                raise KeyboardInterrupt
            self.stop = True

        def on_usr1(signum, frame):
            self.save_requested = True

        try:
            old[signal.SIGINT] = signal.signal(signal.SIGINT, on_int)
            if hasattr(signal, "SIGUSR1"):
                old[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, on_usr1)
        except ValueError:  # not the main thread (e.g. a test runner thread): no handlers
            pass
        try:
            yield self
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)


MAX_SEED = 2**32 - 1
MAX_EPOCHS = 1_000_000


def check_before_work(spec: dict) -> None:
    """Fail before any data is read: seed and epochs in range, checkpoint, run and TensorBoard folders writable."""
    from nnctl.runlog import default_run_dir  # noqa: PLC0415

    source = spec.get("_source", "spec")
    seed, epochs = spec["seed"], spec["train"]["epochs"]
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise SpecError(f"{source}: seed: expected an integer from 0 to {MAX_SEED}, found {quote(seed)}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or not 0 <= epochs <= MAX_EPOCHS:
        raise SpecError(f"{source}: train.epochs: expected an integer from 0 to {MAX_EPOCHS}, found {quote(epochs)}")
    ckpt = spec["output"]["checkpoint"]
    fs.check_output_file(ckpt, "checkpoint")
    fs.check_output_dir(spec["output"].get("run_dir") or default_run_dir(ckpt), "run folder")
    if spec["train"].get("tensorboard"):
        fs.check_output_dir(spec["train"]["tensorboard"], "TensorBoard folder")


def train(spec: dict, emit=_noop, device: str = "auto", resume: str | None = None, init_from: str | None = None,
          hooks: Hooks | None = None, is_writer: bool = True) -> dict:
    """Train ``spec``; write its checkpoint and run folder; returns the final ``done`` event.

    Outputs are checked before the data is loaded, and the checkpoint path stays locked for the run
    (a second run on it is refused)."""
    if not is_writer:
        return _train(spec, emit, device, resume, init_from, hooks, is_writer)
    check_before_work(spec)
    with fs.run_lock(spec["output"]["checkpoint"]):
        return _train(spec, emit, device, resume, init_from, hooks, is_writer)


def _train(spec, emit, device, resume, init_from, hooks, is_writer) -> dict:
    B.use(device)
    t_start = time.perf_counter()
    ds = load_dataset(spec)
    model = model_for_data(spec, ds)
    init_from = init_from or spec["model"].get("init_from")
    if init_from:
        from nnctl.interop.keras_weights import init_arrays  # noqa: PLC0415 - an nnctl checkpoint or a Keras file

        weights, state = init_arrays(init_from, model)
        loaded, skipped = load_into(model, weights, state, str(init_from), strict=False)
        emit({"event": "init_from", "checkpoint": str(init_from), "loaded": loaded, "skipped": skipped})
    model.to_device()
    loss, optimizer = make_loss(spec), make_optimizer(spec)
    tcfg = spec["train"]
    epochs = int(tcfg["epochs"])
    sched_cfg = dict(tcfg.get("lr_schedule") or {})
    schedule = Schedule(optimizer.learning_rate, total_epochs=epochs, **sched_cfg)
    early = EarlyStopping(**tcfg["early_stopping"]) if tcfg.get("early_stopping") else None
    if early and early.monitor.startswith("val_") and ds.x_val is None:
        raise SpecError(f"{spec.get('_source', 'spec')}: train.early_stopping.monitor: {early.monitor!r} needs "
                        f"validation data; set data.validation (a path or {{split = 0.2}})")
    hooks = hooks or Hooks()
    signals = Signals()
    agree = hooks.agree_stop

    def should_stop():
        if agree is not None:  # data parallel: every rank stops at the same batch
            signals.stop = agree(signals.stop)
        return signals.stop

    hooks.should_stop = should_stop
    if spec["data"].get("augment"):
        from nnctl.data.augment import build_augmenter  # noqa: PLC0415

        try:
            hooks.augment = build_augmenter(spec["data"]["augment"], ds.prep.kind, ds.x_train.shape[1:])
        except SpecError as exc:  # name the spec file, as validation errors do
            raise SpecError(f"{spec.get('_source', 'spec')}: {exc}") from None
    decode = _device_decoder(ds.prep) if ds.prep.task == "regression" and ds.prep.y_shift is not None else None
    out_units = model.output_shape[-1]
    trainer = Trainer(model, loss, optimizer, tcfg, ds.prep.task, ds.prep.n_classes(out_units), spec["seed"],
                      schedule, early, hooks, decode)
    ckpt_path = spec["output"]["checkpoint"]
    if resume:
        ck = Checkpoint(resume)
        diff = model_differences(spec, ck.spec)
        if diff:
            raise SpecError(f"--resume {resume}: the spec's model differs from the checkpoint's: " + "; ".join(diff))
        trainer.restore(snapshot_from_checkpoint(ck, trainer))
        emit({"event": "resume", "checkpoint": str(resume), "epoch": trainer.state.epoch})
    start_epoch = trainer.state.epoch
    last = trainer.snapshot()
    best = last if trainer.state.epoch == 0 or not early else None
    best_epoch = early.best_epoch if early else None

    def write(path, weights_snap, best_ep):
        if is_writer:
            write_checkpoint(path, spec, trainer, ds.prep, last, weights_snap, best_ep)

    def between_batches():
        if signals.save_requested:
            signals.save_requested = False
            write(ckpt_path, best if best is not None and early and early.restore_best else last, best_epoch)
            emit({"event": "checkpoint", "reason": "SIGUSR1", "checkpoint": ckpt_path, "epoch": last["epoch"]})

    hooks.between_batches = between_batches

    def on_epoch_end(epoch, logs, is_best):
        nonlocal last, best, best_epoch
        last = trainer.snapshot()
        if is_best:
            best, best_epoch = last, epoch
        emit({"event": "epoch", "epoch": epoch, "epochs": epochs, **logs})
        stem = pathlib.Path(ckpt_path)
        if tcfg.get("save_every") and epoch % tcfg["save_every"] == 0:
            write(stem.with_name(f"{stem.stem}.epoch{epoch:03d}.h5"), last, best_epoch)
        if tcfg.get("save_best") and is_best:
            write(stem.with_name(f"{stem.stem}.best.h5"), last, epoch)
        if tb is not None:
            tb.epoch(epoch, logs, model)

    tb = None
    if tcfg.get("tensorboard") and is_writer:
        from nnctl.tensorboard import TensorBoardWriter  # noqa: PLC0415

        tb = TensorBoardWriter(tcfg["tensorboard"])
    try:
        with signals.installed():  # also while the final checkpoint is written: a Ctrl-C then sets ``stop``
            try:
                trainer.fit(ds.x_train, ds.y_train, epochs, ds.x_val, ds.y_val, on_epoch_end)
            except BaseException as exc:
                kept = last["epoch"] > 0 and is_writer
                if kept:  # keep the last good epoch (diverged or crashed)
                    write(ckpt_path, last, best_epoch)
                if isinstance(exc, TrainingDiverged):  # say what is on disk, and only that
                    exc.checkpoint = ckpt_path if kept else None
                    exc.args = (f"{exc}; " + (f"wrote {ckpt_path} with epoch {last['epoch']}, the last good one"
                                              if kept else "no epoch had finished, so no checkpoint was written"),)
                raise
            if signals.stop and last["epoch"] == start_epoch:  # nothing new to save: never clobber what is there
                kept = f"; {ckpt_path} is unchanged" if pathlib.Path(ckpt_path).exists() else ""
                raise Interrupted(f"interrupted before epoch {start_epoch + 1} finished: nothing written{kept}")
            done = _finish(spec, ckpt_path, write, last, best, best_epoch, early, t_start, is_writer)
    finally:
        if tb is not None:
            tb.close()
    if signals.stop:
        emit(done)
        exc = Interrupted(f"interrupted: wrote {ckpt_path} with epoch {last['epoch']}")
        exc.checkpoint = ckpt_path  # the CLI adds the command that continues
        raise exc
    return done


def _finish(spec, ckpt_path, write, last, best, best_epoch, early, t_start, is_writer) -> dict:
    """Write the final checkpoint and the run folder; the ``done`` event."""
    from nnctl.runlog import default_run_dir, overfit_summary, write_run  # noqa: PLC0415

    use_best = early is not None and early.restore_best and best is not None
    write(ckpt_path, best if use_best else last, best_epoch if use_best else None)
    weights_epoch = best_epoch if use_best else last["epoch"]
    summary = overfit_summary(last["history"], weights_epoch)
    run_dir = spec["output"].get("run_dir") or str(default_run_dir(ckpt_path))
    final = {k: v[weights_epoch - 1] for k, v in last["history"].items() if weights_epoch and len(v) >= weights_epoch}
    done = {"event": "done", "checkpoint": ckpt_path, "run_dir": run_dir, "epochs_run": last["epoch"],
            "weights_epoch": weights_epoch, "stopped_early": bool(early and early.stopped),
            "seconds": time.perf_counter() - t_start, "metrics": final, "summary": summary}
    if is_writer:
        write_run(run_dir, spec, last["history"], summary)
    return done


def _device_decoder(prep: Preprocessor):
    shift, scale = B.asarray(prep.y_shift), B.asarray(prep.y_scale)
    return lambda a: a.astype(shift.dtype) * scale + shift


# -- evaluate and predict ------------------------------------------------------------------------------
def restore(path, device: str = "auto") -> tuple[Checkpoint, Model, Preprocessor, dict]:
    """Rebuild the model stored in a checkpoint, with its weights, on the chosen device."""
    B.use(device)
    ck = Checkpoint(path)
    spec = ck.spec
    try:
        prep = Preprocessor.from_arrays(ck.prep_arrays)
        shape = tuple(spec["model"]["input_shape"])
    except (KeyError, ValueError, TypeError, json.JSONDecodeError) as exc:
        raise SpecError(f"{path}: checkpoint preprocessing or spec is incomplete ({exc})") from None
    defaults = spec.get("_defaults", {})
    try:
        model = build_model(spec, shape, spec["seed"], defaults, input_dtype=spec.get("_input_dtype"))
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path}: /spec: the stored model cannot be built ({type(exc).__name__}: "
                              f"{quote(exc, 60)})") from None
    _check_classes(path, prep, model)
    load_into(model, ck.weights, ck.state, str(path))
    model.to_device()
    return ck, model, prep, spec


def _check_classes(path, prep: Preprocessor, model: Model) -> None:
    """A classifier's stored labels must match its output units (else predictions name the wrong class)."""
    if prep.classes is None or isinstance(model.output_shape, list):
        return
    units = model.output_shape[-1]
    n = len(prep.classes)
    bad = (n != units) if prep.task in ("categorical", "sparse") else (prep.task == "binary" and (units != 1 or n > 2))
    if bad:
        raise CheckpointError(f"{path}: /preprocessing/classes holds {n} labels but the model has {units} output "
                              f"units; the checkpoint is inconsistent")


def evaluation_data(path, spec: dict, prep: Preprocessor, model: Model, data: str | None,
                    preprocessed: bool = False):
    """The labelled inputs a checkpoint is evaluated on: ``data`` (any labelled kind the data section reads),
    else the spec's test set -> (x, y, source)."""
    if data:
        from nnctl.data import load_split  # noqa: PLC0415

        x, y = load_split(spec, prep, data, preprocessed=preprocessed)
        source = data
    else:
        if not spec["data"].get("test"):
            raise SpecError(f"{path}: the spec has no data.test; pass --data FILE")
        ds = load_dataset(spec)
        x, y, source = ds.x_test, ds.y_test, spec["data"]["test"]
    from nnctl.data.inputs import conform  # noqa: PLC0415

    x = conform(x, model.input_shape)
    if tuple(x.shape[1:]) != tuple(model.input_shape):
        raise DataError(f"{source}: samples have shape {list(x.shape[1:])} ({_features(x.shape[1:])}), the model "
                        f"expects {list(model.input_shape)}")
    model.check_input(x, source)
    return x, y, source


def evaluate(path, data: str | None = None, device: str = "auto", preprocessed: bool = False) -> dict:
    """Loss and every metric of a checkpoint on the spec's test set or on ``data``."""
    ck, model, prep, spec = restore(path, device)
    x, y, source = evaluation_data(path, spec, prep, model, data, preprocessed)
    check_targets(spec, model, y, prep)
    decode = _device_decoder(prep) if prep.task == "regression" and prep.y_shift is not None else None
    loss, opt = make_loss(spec), make_optimizer(spec)
    opt.init_slots(0, model.dtype)
    trainer = Trainer(model, loss, opt, spec["train"], prep.task, prep.n_classes(model.output_shape[-1]),
                      spec["seed"], decode=decode)
    if prep.task == "regression":  # errors in the target's own units beside the loss, whatever the spec lists
        trainer.metric_names += [m for m in ("mse", "mae", "rmse") if m not in trainer.metric_names]
    logs = trainer.evaluate(x, y)
    if prep.kind == "timeseries":  # a forecast is only useful if it beats repeating the last value
        from nnctl.data.timeseries import naive_metrics  # noqa: PLC0415

        logs.update(naive_metrics(x, y, prep))
        if "naive_mse" in logs:
            logs["naive_rmse"] = float(np.sqrt(logs["naive_mse"]))
    return {"checkpoint": str(path), "data": str(source), "samples": int(len(x)), **logs}


def predict(restored, raw_inputs, preprocessed: bool = False, source: str = "input") -> tuple[np.ndarray, np.ndarray]:
    """Model outputs and decoded predictions (labels or original units) for raw inputs, from ``restore``.

    The checkpoint's preprocessing (rescale, normalisation) is applied once, unless ``preprocessed``
    says the inputs already went through it; (N, H, W) inputs of an (H, W, 1) model get the channel axis.
    """
    ck, model, prep, spec = restored
    if spec["model"].get("decode"):  # teacher-forced sequence model: rows are source ids (nnctl/decode.py)
        from nnctl.decode import greedy_decode  # noqa: PLC0415

        p = greedy_decode(model, raw_inputs, spec["model"]["decode"])
        return p, prep.decode_y(p)
    from nnctl.data.inputs import conform  # noqa: PLC0415

    raw_inputs = conform(np.asarray(raw_inputs), model.input_shape)
    if tuple(raw_inputs.shape[1:]) != tuple(model.input_shape):  # before scaling, which would broadcast
        raise DataError(f"{source}: rows have shape {list(raw_inputs.shape[1:])} ({_features(raw_inputs.shape[1:])}), "
                        f"the model expects {list(model.input_shape)} ({_features(model.input_shape)})")
    dtype = np.dtype(spec["dtype"])
    if preprocessed:
        x = raw_inputs if raw_inputs.dtype.kind in "iu" and prep.kind == "text" else raw_inputs.astype(dtype, copy=False)
    else:
        x = prep.transform_x(raw_inputs, dtype)
    model.check_input(x, source)
    p = B.to_numpy(make_loss(spec).probabilities(model.predict(x)))
    return p, prep.decode_y(p)
