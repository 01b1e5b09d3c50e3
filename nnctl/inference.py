"""Inference from a checkpoint alone (its stored spec, statistics and classes): restore, evaluate, predict.

No optimizer and no trainer: evaluation is ``scoring.evaluate_model`` over the restored model.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from nnctl import backend as B
from nnctl import metrics
from nnctl.assemble import check_targets, device_decoder, features, make_heads, make_loss
from nnctl.build import build_model
from nnctl.checkpoint import Checkpoint, load_into
from nnctl.data import ARRAY_KINDS, load_dataset, load_split, reconstructs
from nnctl.data.preprocess import Preprocessor
from nnctl.data.splits import check_finite
from nnctl.errors import CheckpointError, DataError, SpecError, quote
from nnctl.graph import Model, rows
from nnctl.multi_spec import is_multi
from nnctl.outputs import Heads
from nnctl.scoring import evaluate_model
from nnctl.spec_model import ModelFacts, Spec


class Restored(NamedTuple):
    """A checkpoint's model rebuilt with its weights, with what inference needs beside it."""

    checkpoint: Checkpoint
    model: Model
    prep: Preprocessor
    spec: Spec


def restore(path, device: str = "auto") -> Restored:
    """Rebuild the model stored in a checkpoint, with its weights, on the chosen device."""
    B.use(device)
    ck = Checkpoint(path)
    stored = ck.spec
    if stored.get("train", {}).get("mode") == "gan":  # two models: evaluate, predict, export and serve read one
        raise CheckpointError(
            f'{path}: a GAN checkpoint (train.mode = "gan") holds a generator and a '
            f"discriminator, not one model trained on (input, target) pairs; sample the "
            f"generator with: nnctl generate {path}"
        )
    try:
        prep = Preprocessor.from_arrays(ck.prep_arrays)
        shape = stored_input_shape(stored)
    except (KeyError, ValueError, TypeError, json.JSONDecodeError) as exc:
        raise SpecError(f"{path}: checkpoint preprocessing or spec is incomplete ({exc})") from None
    facts = ModelFacts.from_stored(ck.model_facts, stored)  # older checkpoints kept them in the spec JSON
    try:
        spec = Spec.from_dict(stored, str(path))
        model = build_model(spec, shape, spec.seed, facts.defaults, input_dtype=facts.input_dtype)
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise CheckpointError(
            f"{path}: /spec: the stored model cannot be built ({type(exc).__name__}: {quote(exc, 60)})"
        ) from None
    _check_classes(path, prep, model)
    load_into(model, ck.weights, ck.state, str(path))
    model.to_device()
    return Restored(ck, model, prep, spec)


def stored_input_shape(spec: dict) -> tuple:
    """The input shape a checkpoint's model is built for: model.input_shape, or its first named input's."""
    named = spec["model"].get("inputs")
    return tuple(next(iter(named.values()))["shape"]) if named else tuple(spec["model"]["input_shape"])


def _check_classes(path, prep: Preprocessor, model: Model) -> None:
    """A classifier's stored labels must match its output units (else predictions name the wrong class)."""
    if prep.classes is None or isinstance(model.output_shape, list):
        return
    units = model.output_shape[-1]
    n = len(prep.classes)
    bad = (n != units) if prep.task in ("categorical", "sparse") else (prep.task == "binary" and (units != 1 or n > 2))
    if bad and prep.task == "sparse" and n < units:  # class indices train a wider head (specs/zoo as shipped)
        raise CheckpointError(
            f"{path}: trained on {n} classes (sparse labels) with a {units}-unit head; predict "
            f"and evaluate name one class per unit: train on data with {units} classes"
        )
    if bad:
        raise CheckpointError(
            f"{path}: /preprocessing/classes holds {n} labels but the model has {units} output "
            f"units; the checkpoint is inconsistent"
        )


def evaluation_data(path, spec: Spec, prep: Preprocessor, model: Model, data: str | None, preprocessed: bool = False):
    """The labelled inputs a checkpoint is evaluated on: ``data`` (any labelled kind the data section reads),
    else the spec's test set -> (x, y, source)."""
    if data:
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported below, once
            x, y = load_split(spec, prep, data, preprocessed=preprocessed)
        source = data
    else:
        if not spec.data.test:
            raise SpecError(f"{path}: the spec has no data.test; pass --data FILE")

        source = spec.data.test
        if prep.kind in ARRAY_KINDS:  # the stored preprocessing: the training file is not read again
            x, y = load_split(spec, prep, source)
        else:
            ds = load_dataset(spec)
            x, y = ds.x_test, ds.y_test
    from nnctl.data.inputs import conform

    x = conform(x, model.input_shape)
    finite_after_scaling(x, source, spec.dtype)
    if tuple(x.shape[1:]) != tuple(model.input_shape):
        raise DataError(
            f"{source}: samples have shape {list(x.shape[1:])} ({features(x.shape[1:])}), the model "
            f"expects {list(model.input_shape)}"
        )
    model.check_input(x, source)
    return x, y, source


def evaluate(
    path,
    data: str | None = None,
    device: str = "auto",
    preprocessed: bool = False,
    on_batch: Callable[[int, int], None] | None = None,
    anomaly: dict | None = None,
) -> dict:
    """Loss and every metric of a checkpoint on the spec's test set or on ``data``; ``on_batch(done, total)``
    follows the rows. An autoencoder's also get reconstruction errors (``anomaly`` = {label, errors}:
    nnctl.anomaly.report)."""
    ck, model, prep, spec = restore(path, device)
    if is_multi(spec):
        return evaluate_named(path, model, spec, data, on_batch)
    x, y, source = evaluation_data(path, spec, prep, model, data, preprocessed)
    check_targets(spec, model, y, prep)
    asked = [k for k, v in (anomaly or {}).items() if v]
    if asked and not reconstructs(prep):  # per-row errors and anomaly labels are an autoencoder's
        raise SpecError(
            f"--{'anomaly-label' if asked[0] == 'label' else asked[0]}: expected an autoencoder "
            f"(data.target = 'input'), found {path} trained on targets"
        )
    names = [metrics.METRICS.canonical(m) for m in spec.train.metrics]
    if prep.task == "regression":  # errors in the target's own units beside the loss, whatever the spec lists
        names += [m for m in ("mse", "mae", "rmse") if m not in names]
    report = prep.task != "regression" and not isinstance(model.output_shape, list)
    outputs: list = []  # the report reads the same forward pass as the loss and metrics
    logs = evaluate_model(
        model,
        make_loss(spec),
        x,
        y,
        names,
        prep.task,
        prep.n_classes(model.output_shape[-1]),
        device_decoder(prep),
        on_batch=on_batch,
        outputs=outputs if report or reconstructs(prep) else None,
    )
    if prep.kind == "timeseries":  # a forecast is only useful if it beats repeating the last value
        from nnctl.data.timeseries import naive_metrics

        logs.update(naive_metrics(x, y, prep))
        if "naive_mse" in logs:
            logs["naive_rmse"] = float(np.sqrt(logs["naive_mse"]))
    out = {"checkpoint": str(path), "data": str(source), "samples": int(len(x)), **logs}
    if report:
        from nnctl.report import classification_report

        p = B.to_numpy(make_loss(spec).probabilities(outputs[0]))
        classes = prep.classes if prep.classes is not None else np.arange(prep.n_classes(model.output_shape[-1]))
        out.update(classification_report(p, np.asarray(y), prep.task, classes))
    if reconstructs(prep) and outputs:
        out.update(_reconstruction_report(ck, model, spec, x, outputs[0], source, anomaly or {}))
    if prep.unseen:  # category levels not in the training vocabulary, read as out of vocabulary
        out["unseen"] = dict(prep.unseen)
    return out


def _reconstruction_report(ck, model, spec: Spec, x, outputs, source, anomaly: dict) -> dict:
    """An autoencoder's per-row errors, stored threshold, flagged rows and, for denoising, noisy vs denoised MSE."""
    from nnctl import anomaly as A

    loss = make_loss(spec)
    label = anomaly.get("label") or spec.data.anomaly_label
    out = A.report(ck, model, loss, x, outputs, source, label, anomaly.get("errors"))
    out.update(A.denoising(model, loss, x, spec))
    return out


def named_source(path, spec: Spec, data: str | None) -> str:
    if data:
        return data
    if not spec.data.test:
        raise SpecError(f"{path}: the spec has no data.test; pass --data FILE")
    return spec.data.test


def evaluate_named(
    path, model: Model, spec: Spec, data: str | None, on_batch: Callable[[int, int], None] | None = None
) -> dict:
    """Total loss, each output's loss and metrics (``<name>_loss``, ``<name>_<metric>``) of a model with
    named inputs or outputs, on its test set or ``data``."""
    from nnctl.data import multi

    source = named_source(path, spec, data)
    x, y = multi.load_split(spec, source, {n.name: n.output_shape for n in model.nodes})
    model.check_input(x, source)
    heads = make_heads(spec, model) or Heads.single(
        model,
        make_loss(spec),
        _canonical(spec.train.metrics),
        make_loss(spec).task,
        model.output_shape[-1],
    )
    logs = evaluate_model(model, None, x, y, [], "", 0, on_batch=on_batch, heads=heads)
    return {"checkpoint": str(path), "data": str(source), "samples": int(rows(x)), **logs}


def _canonical(names) -> list[str]:
    return [metrics.METRICS.canonical(m) for m in names]


def predict_named(restored: Restored, source: str, on_batch: Callable[[int, int], None] | None = None) -> dict:
    """{output name: (outputs, decoded)} of a model with named inputs or outputs, for the inputs of the CSV
    column groups or npz/h5 arrays in ``source``: class outputs decode to ids, others are values."""
    from nnctl.data import multi

    ck, model, prep, spec = restored
    x = multi.read_inputs(source, spec)
    model.check_input(x, source)
    p = model.predict(x, on_batch=on_batch)
    heads = make_heads(spec, model)
    if heads is None:
        loss = make_loss(spec)
        probs = B.to_numpy(loss.probabilities(p))
        return {"": (probs, _decoded(probs, loss.task))}
    out = {}
    for h in heads.heads:
        probs = B.to_numpy(h.loss.probabilities(p[h.node]))
        out[h.name] = (probs, _decoded(probs, h.task))
    return out


def _decoded(p: np.ndarray, task: str) -> np.ndarray:
    if task in ("categorical", "sparse"):
        return p.argmax(axis=-1)
    if task == "binary":
        return (p > 0.5).astype(np.int64)
    return p


def predict(
    restored: Restored,
    raw_inputs,
    preprocessed: bool = False,
    source: str = "input",
    embed: str | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Model outputs and decoded predictions (labels or original units) for raw inputs, from ``restore``.

    The checkpoint's preprocessing (rescale, normalisation) is applied once, unless ``preprocessed``
    says the inputs already went through it; (N, H, W) inputs of an (H, W, 1) model get the channel axis.
    An autoencoder's (``data.target = "input"``) decoded predictions are its reconstructions in the raw
    input's units; ``embed`` names a layer whose outputs (e.g. the bottleneck codes) are returned, twice.
    ``on_batch(done, total)`` follows the rows.
    """
    ck, model, prep, spec = restored
    names = [e.name for e in model.entries()]  # the spec's layer names (not an entry's internal "<name>/linear")
    if embed is not None and embed not in names:
        raise SpecError(f"--embed: expected a layer name ({', '.join(names)}), found {embed!r}")
    if spec.model.decode is not None:  # teacher-forced sequence model: rows are source ids (nnctl/decode.py)
        from nnctl.decode import greedy_decode

        p = greedy_decode(model, raw_inputs, spec.model.decode)
        return p, prep.decode_y(p)
    from nnctl.data.inputs import conform

    raw_inputs = conform(np.asarray(raw_inputs), model.input_shape)
    if tuple(raw_inputs.shape[1:]) != tuple(model.input_shape):  # before scaling, which would broadcast
        raise DataError(
            f"{source}: rows have shape {list(raw_inputs.shape[1:])} ({features(raw_inputs.shape[1:])}), "
            f"the model expects {list(model.input_shape)} ({features(model.input_shape)})"
        )
    dtype = np.dtype(spec.dtype)
    if preprocessed:
        x = (
            raw_inputs
            if raw_inputs.dtype.kind in "iu" and prep.kind == "text"
            else raw_inputs.astype(dtype, copy=False)
        )
    else:
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported below, once
            x = prep.transform_x(raw_inputs, dtype)
    finite_after_scaling(x, source, spec.dtype)
    model.check_input(x, source)
    if embed is not None:
        codes = model.predict(x, until=embed, on_batch=on_batch)
        return codes, codes
    p = B.to_numpy(make_loss(spec).probabilities(model.predict(x, on_batch=on_batch)))
    finite_outputs(p, source)
    if reconstructs(prep):
        return p, prep.inverse_x(p)
    return p, prep.decode_y(p)


def finite_after_scaling(x, source: str, dtype: str) -> None:
    """Refuse model inputs that are NaN/inf after preprocessing: finite raw values too large for ``dtype``
    (1e300 as float32) would otherwise come back as NaN predictions with exit 0."""
    if isinstance(x, np.ndarray):  # inputs read per batch were checked as they were read
        check_finite(x, source, None, f"after preprocessing to {dtype}: an input value is out of range")


def finite_outputs(p, source: str) -> None:
    """Refuse a prediction that is NaN/inf (the forward pass overflowed on a finite input)."""
    if not isinstance(p, np.ndarray):  # several outputs: each is the multi-output path's to report
        return

    with np.errstate(all="ignore"):
        check_finite(p, source, None, "the model's output overflowed on this input")
