"""Export a checkpoint to an ONNX model that gives the same outputs as ``nnctl predict``.

Graph: input ``input`` (batch, *model.input_shape), raw values as ``predict`` reads them (float32, or
int64 token ids for text models); the checkpoint's preprocessing x' = (x * rescale - shift) / scale
is the first nodes (in float64, as nnctl computes it); then every layer in order; then the loss's
output activation when the model outputs logits. Output ``output`` (batch, *model.output_shape): the
probabilities of a classifier (``predict --proba``) or the values of a regression in the target's
units (a standardised target is mapped back in the graph). Metadata holds the classes, the
preprocessing, the spec name and the nnctl version.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from nnctl import __version__
from nnctl import backend as B
from nnctl.assemble import make_loss
from nnctl.errors import SpecError
from nnctl.fs import atomic_write
from nnctl.graph import INPUT
from nnctl.inference import restore
from nnctl.interop import onnx_layers, onnx_rnn  # noqa: F401 - they register the converters
from nnctl.interop.onnx_activations import activation
from nnctl.interop.onnx_graph import CONVERTERS, ONNX_DTYPES, Graph, Unsupported
from nnctl.interop.onnx_layers import _masking_keep
from nnctl.multi_spec import refuse_named

OPSETS = range(13, 22)
DEFAULT_OPSET = 17


def _onnx():
    try:
        import onnx
    except ImportError:
        raise SpecError("--format onnx: needs the onnx package: pip install 'nnctl[onnx]'") from None
    return onnx


def export_onnx(path, output: str | None = None, opset: int = DEFAULT_OPSET) -> dict:
    """Write ``output`` (default: the checkpoint with .onnx) and return a summary of what was written."""
    if opset not in OPSETS:
        raise SpecError(f"--opset: expected an integer from {OPSETS[0]} to {OPSETS[-1]}, found {opset}")
    onnx = _onnx()
    restored = restore(path, "cpu")
    refuse_named(restored.spec, "export", str(path))
    model_proto = build_onnx(restored, str(path), opset)
    out = pathlib.Path(output) if output else pathlib.Path(path).with_suffix(".onnx")
    atomic_write(out, lambda tmp: onnx.save_model(model_proto, tmp))
    graph = model_proto.graph
    return {
        "output": str(out),
        "format": "onnx",
        "opset": opset,
        "nodes": len(graph.node),
        "inputs": [_shape_of(v) for v in graph.input],
        "outputs": [_shape_of(v) for v in graph.output],
    }


def _shape_of(value) -> dict:
    dims = [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
    return {"name": value.name, "shape": dims}


def build_onnx(restored, source: str, opset: int = DEFAULT_OPSET):
    """The checked ONNX ModelProto of a restored checkpoint (``nnctl.inference.restore``'s tuple)."""
    onnx = _onnx()
    from onnx import helper

    ck, model, prep, spec = restored
    if spec.model.decode is not None:
        raise SpecError(
            f"{source}: model.decode: cannot be exported to ONNX: greedy decoding runs the model once "
            f"per output step, a loop outside the graph"
        )
    g = Graph(opset, model.dtype)
    integer_input = model.input_dtype.kind in "iu"
    in_type = onnx.TensorProto.INT64 if integer_input else ONNX_DTYPES[g.dtype]
    x = "input"
    g.input_kinds = {x: "i" if integer_input else "f"}
    if not integer_input:
        x = _preprocessing(g, prep, x)
        g.input_kinds[x] = "f"
    elif any((INPUT, None) in n.refs and type(n.layer).__name__ != "Embedding" for n in model.nodes):
        g.scope = "input"
        x = g.op("Cast", [x], to=ONNX_DTYPES[g.dtype])
        g.input_kinds[x] = "f"
    outs: dict[str, object] = {INPUT: x}
    masks: dict[str, object] = {INPUT: None}
    for node in model.nodes:  # an entry's ``activation`` key is an Activation node of its own
        layer, type_name = node.layer, type(node.layer).__name__
        where = f"{source}: model.layers[{node.index}] ({layer.name}, {type_name}): cannot be exported to ONNX"
        g.scope = node.name
        ins = [outs[name] if idx is None else outs[name][idx] for name, idx in node.refs]
        in_masks = [masks[name] if idx in (None, 0) else None for name, idx in node.refs]
        convert = CONVERTERS.get(type_name)
        if convert is None:
            raise SpecError(f"{where}: nnctl has no ONNX form for {type_name} layers yet")
        params = {k: B.to_numpy(v) for k, v in (*layer.params.items(), *layer.state.items())}
        try:
            y = convert(g, layer, ins, in_masks if layer.mask_per_input else in_masks[:1], params)
            masks[node.name] = _output_mask(g, layer, ins, in_masks)
        except Unsupported as exc:
            raise SpecError(f"{where}: {exc}") from None
        outs[node.name] = y
    last = outs[model.nodes[-1].name]
    if isinstance(last, list):
        raise SpecError(f"{source}: model.layers[-1]: cannot be exported to ONNX: the last layer has several outputs")
    loss = make_loss(spec)
    g.scope = "output"
    if loss.from_logits:  # predict reports probabilities: the loss's activation is part of the model here
        last = activation(g, loss.logit_activation, last)
    if prep.task == "regression" and prep.y_shift is not None:  # back to the target's units, as predict prints
        y = g.op("Cast", [last], to=11)
        y = g.op(
            "Add",
            [
                g.op("Mul", [y, g.const(prep.y_scale, "target_scale", np.float64)]),
                g.const(prep.y_shift, "target_shift", np.float64),
            ],
        )
        last = g.op("Cast", [y], to=ONNX_DTYPES[g.dtype])
    g.nodes.append(helper.make_node("Identity", [last], ["output"], name="output"))
    inp = helper.make_tensor_value_info("input", in_type, ["batch", *model.input_shape])
    outp = helper.make_tensor_value_info("output", ONNX_DTYPES[g.dtype], ["batch", *model.output_shape])
    proto = g.model([inp], [outp], f"nnctl model exported from {source}", _metadata(prep, spec, loss))
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:  # a bug of ours
        raise RuntimeError(f"the exported graph does not pass onnx.checker: {exc}") from None
    return proto


def _preprocessing(g, prep, x: str) -> str:
    """x' = (x * rescale - shift) / scale in float64, cast to the model dtype (as Preprocessor.transform_x)."""
    if prep.rescale is None and prep.x_shift is None:
        return x
    g.scope = "preprocessing"
    y = g.op("Cast", [x], to=11)  # DOUBLE
    if prep.rescale is not None:
        y = g.op("Mul", [y, g.const(np.float64(prep.rescale), "rescale", np.float64)])
    if prep.x_shift is not None:
        y = g.op("Sub", [y, g.const(prep.x_shift, "shift", np.float64)])
        y = g.op("Div", [y, g.const(prep.x_scale, "scale", np.float64)])

    return g.op("Cast", [y], to=ONNX_DTYPES[g.dtype])


class _Probe:
    """A stand-in mask: asking a layer's ``compute_mask`` about it tells which input's mask it passes on."""


def _output_mask(g, layer, ins, in_masks):
    """The output padding mask tensor (nnctl's ``compute_mask``), or None."""
    type_name = type(layer).__name__
    if type_name == "Embedding" and layer.mask_zero:
        return g.op("Not", [g.op("Equal", [ins[0], g.const(0, "zero", _input_dtype(g, ins[0]))])])
    if type_name == "Masking":
        return _masking_keep(g, layer, ins[0])
    if all(m is None for m in in_masks):
        return None
    if type_name == "Cropping1D":
        a, b = layer.cropping
        return g.slice(in_masks[0], [a], [layer.input_shapes[0][0] - b], [1])
    probes = [_Probe() for _ in in_masks]
    try:
        got = layer.compute_mask(probes if layer.mask_per_input else probes[0], [None] * len(ins))
    except (TypeError, AttributeError, IndexError):
        raise Unsupported("it transforms the padding mask in a way this exporter does not write") from None
    if got is None:
        return None
    for probe, mask in zip(probes, in_masks):
        if got is probe:
            return mask
    raise Unsupported("it transforms the padding mask in a way this exporter does not write")


def _input_dtype(g, name):
    return np.int64 if g.input_kinds.get(name) == "i" else g.dtype


def _metadata(prep, spec, loss) -> dict[str, str]:
    """Strings for the model's metadata_props: what a consumer needs to read inputs and outputs."""
    meta = {
        "nnctl_version": __version__,
        "spec": str(spec.name or spec.source),
        "task": prep.task,
        "input_kind": prep.kind,
        "preprocessing": json.dumps(
            {
                "rescale": prep.rescale,
                "normalize": prep.normalize,
                "folded_into_graph": True,
                "note": "inputs are raw values; text models take token ids",
            }
        ),
    }
    if prep.classes is not None:
        meta["classes"] = json.dumps([c.item() if hasattr(c, "item") else c for c in prep.classes])
    if prep.feature_names:
        meta["feature_names"] = json.dumps(list(prep.feature_names))
    if prep.target_names:
        meta["target_names"] = json.dumps(list(prep.target_names))
    meta["output"] = "probabilities" if prep.task != "regression" else "values"
    return meta
