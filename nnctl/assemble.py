"""The spec's pieces for a dataset or a checkpoint: the model built for the data, its loss, optimizer, decoder."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from nnctl import backend as B
from nnctl import losses, metrics, optimizers
from nnctl.build import build_model
from nnctl.data import Dataset
from nnctl.data.preprocess import Preprocessor
from nnctl.errors import DataError, SpecError
from nnctl.graph import Model
from nnctl.multi_spec import is_multi
from nnctl.outputs import Head, Heads
from nnctl.spec_model import ModelFacts, Spec


def model_for_data(spec: Spec, ds: Dataset) -> Model:
    """Build the spec's model for the dataset's input shape and check its output against the targets."""
    if is_multi(spec):
        return model_for_named(spec, ds)
    shape = tuple(spec.model.input_shape or ds.input_shape)
    if tuple(ds.input_shape) != shape:
        raise DataError(
            f"{spec.data.train}: samples have shape {list(ds.input_shape)} "
            f"({features(ds.input_shape)}), but model.input_shape is {list(shape)}"
        )
    model = build_model(spec, shape, spec.seed, ds.defaults, input_dtype=_input_dtype(spec, ds))
    check_targets(spec, model, ds.y_train, ds.prep)
    model.check_input(ds.x_train, spec.data.train)
    if ds.x_val is not None:
        validation = spec.data.validation
        model.check_input(
            ds.x_val, validation if isinstance(validation, str) else f"{spec.data.train} (validation split)"
        )
    return model


def model_for_named(spec: Spec, ds: Dataset) -> Model:
    """The model of a spec with named inputs or outputs (nnctl.data.multi encoded its targets for it)."""
    named = spec.model.inputs
    if named:
        shape, input_dtype = tuple(next(iter(named.values())).shape), None
    else:
        shape, input_dtype = tuple(ds.x_train.shape[1:]), ds.x_train.dtype
    model = build_model(spec, shape, spec.seed, {}, input_dtype=input_dtype)
    model.check_input(ds.x_train, spec.data.train)
    if ds.x_val is not None:
        model.check_input(ds.x_val, f"{spec.data.train} (validation)")
    return model


def _input_dtype(spec: Spec, ds: Dataset):
    return ds.x_train.dtype if ds.x_train.dtype.kind in "iu" else spec.dtype


def for_checkpoint(spec: Spec, ds: Dataset) -> tuple[Spec, ModelFacts]:
    """What a checkpoint needs to rebuild ``model_for_data``'s model without the data: the spec with
    ``model.input_shape`` taken from the data, and the facts the data supplied (layer defaults, input dtype)."""
    if ds.spec_inputs is not None:  # named-input CSV columns, as resolved from the header
        spec = dataclasses.replace(spec, data=dataclasses.replace(spec.data, inputs=ds.spec_inputs))
    if is_multi(spec):
        if spec.model.inputs:
            return spec, ModelFacts({}, None)
        shape, input_dtype = tuple(ds.x_train.shape[1:]), ds.x_train.dtype
        facts = ModelFacts({}, str(np.dtype(input_dtype)))
    else:
        shape = tuple(spec.model.input_shape or ds.input_shape)
        facts = ModelFacts(dict(ds.defaults), str(np.dtype(_input_dtype(spec, ds))))
    return dataclasses.replace(spec, model=dataclasses.replace(spec.model, input_shape=list(shape))), facts


def make_heads(spec: Spec, model: Model) -> Heads | None:
    """The outputs of a spec with ``model.outputs``, each with its loss, weight and metrics (None without)."""
    named = spec.model.outputs
    if not named:
        return None
    heads = []
    for name, o in named.items():
        head_loss = losses.get(o.loss.type, **o.loss.params)
        units = model.by_name[o.layer].output_shape[-1]
        heads.append(
            Head(
                name,
                o.layer,
                head_loss,
                float(o.weight),
                tuple(metrics.METRICS.canonical(m) for m in o.metrics),
                head_loss.task,
                units if head_loss.task != "binary" else 2,
            )
        )
    return Heads(model, heads)


def features(shape) -> str:
    """A sample shape for a message: "4 features" or "28x28x1"."""
    return f"{shape[0]} features" if len(shape) == 1 else "x".join(map(str, shape))


def check_targets(spec: Spec, model: Model, y: np.ndarray, prep: Preprocessor) -> None:
    out = tuple(model.output_shape) if not isinstance(model.output_shape, list) else None
    if out is None:
        raise SpecError(f"{spec.source}: model.layers[-1]: the last layer must have one output")
    want = out[:-1] if prep.task == "sparse" else out
    if tuple(y.shape[1:]) != want:
        last = (spec.model.layers or [{}])[-1].get("name")
        cut = spec.top_removed  # nnctl.model_top: a feature extractor has no head for these targets
        why = f"; model.include_top = false removed its top ({', '.join(cut)}): train it with the top" if cut else ""
        if prep.classes is not None and prep.task in ("categorical", "sparse"):
            raise DataError(
                f"{spec.data.train}: the target has {len(prep.classes)} classes but the last layer "
                f"({last}) has {out[-1]} units{why}"
            )
        raise DataError(
            f"{spec.data.train}: targets have shape {list(y.shape[1:])} per sample but the last "
            f"layer ({last}) outputs {list(out)}{why}"
        )
    if prep.kind == "segmentation":  # every mask value read is a class id of the output channels
        from nnctl.data.masks import check_classes

        check_classes(spec, out[-1], prep)


def make_loss(spec: Spec) -> losses.Loss:
    return losses.get(spec.train.loss.type, **spec.train.loss.params)


def make_optimizer(spec: Spec) -> optimizers.Optimizer:
    return optimizers.get(spec.train.optimizer.type, **spec.train.optimizer.params)


def device_decoder(prep: Preprocessor) -> Callable | None:
    """Regression outputs back to the target's units on the device (None when targets were not scaled)."""
    if prep.task != "regression" or prep.y_shift is None:
        return None
    shift, scale = B.asarray(prep.y_shift), B.asarray(prep.y_scale)
    return lambda a: a.astype(shift.dtype) * scale + shift
