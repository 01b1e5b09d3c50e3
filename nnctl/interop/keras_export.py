"""``nnctl export --format keras``: a checkpoint as a Keras 3 ``.keras`` archive, written without Keras.

The archive holds ``metadata.json``, ``config.json`` (a functional model: an InputLayer, then one Keras
layer per nnctl layer with the same name, type, keys and wiring) and ``model.weights.h5`` in Keras 3's
layout: ``layers/<snake_case class name>[_<n>]/vars/<i>`` in the model's layer order, sub-layers
(``cell``, ``forward_layer``, ``query_dense``...) below their layer. nnctl's weights already have Keras's
shapes and order. Layers Keras lacks (PositionalEncoding...) and settings it cannot express are refused.
The checkpoint's preprocessing is not a Keras layer: it is listed in metadata.json for the user.
"""

from __future__ import annotations

import io
import json
import pathlib
import re
import zipfile

import numpy as np

from nnctl import __version__
from nnctl import backend as B
from nnctl.errors import SpecError
from nnctl.fs import atomic_write
from nnctl.graph import INPUT
from nnctl.inference import restore
from nnctl.multi_spec import refuse_named

NOT_KERAS = {"PositionalEncoding", "PositionEmbedding"}  # keras_hub layers, not Keras's own
NNCTL_ONLY_KEYS = {"type", "inputs", "causal", "alpha"}
KERAS_ACTIVATIONS = {
    "linear",
    "relu",
    "sigmoid",
    "tanh",
    "softmax",
    "softplus",
    "softsign",
    "selu",
    "elu",
    "gelu",
    "swish",
    "silu",
    "relu6",
    "hard_sigmoid",
    "hard_silu",
    "hard_swish",
    "mish",
    "exponential",
    "log_softmax",
    "leaky_relu",
}


def _snake(name: str) -> str:
    """Keras's ``naming.to_snake_case``: the key of a layer's group in model.weights.h5."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _layer_config(where: str, type_name: str, entry: dict) -> dict:
    if type_name in NOT_KERAS:
        raise SpecError(f"{where}: cannot be exported to Keras: Keras has no {type_name} layer (keras_hub has)")
    cfg = {}
    for key, value in entry.items():
        if key in NNCTL_ONLY_KEYS or key.endswith(("_initializer", "_regularizer")):
            continue
        if key in ("activation", "recurrent_activation") and value is not None:
            if str(value) not in KERAS_ACTIVATIONS:
                raise SpecError(f"{where}: cannot be exported to Keras: activation {value!r} has no Keras name")
            if entry.get("alpha") is not None and value in ("elu", "leaky_relu"):
                raise SpecError(
                    f"{where}: cannot be exported to Keras: {value} with alpha {entry['alpha']} is "
                    f"an activation string Keras cannot parametrise; use an {value} layer"
                )
        if key == "layer":
            inner = dict(value)
            value = {
                "module": "keras.layers",
                "class_name": inner["type"],
                "config": _layer_config(f"{where}.layer", inner["type"], inner),
                "registered_name": None,
            }
        cfg[key] = value
    return cfg


def _tensor(name: str, idx: int, shape) -> dict:
    return {
        "class_name": "__keras_tensor__",
        "config": {"shape": [None, *shape], "dtype": "float32", "keras_history": [name, 0, idx]},
    }


def keras_config(model, spec: dict, source: str) -> dict:
    """The Keras 3 functional-model config of a built nnctl model."""
    shapes = {INPUT: model.input_shape}
    input_name = "input_layer"
    layers = [
        {
            "module": "keras.layers",
            "class_name": "InputLayer",
            "registered_name": None,
            "name": input_name,
            "config": {
                "batch_shape": [None, *model.input_shape],
                "dtype": str(model.input_dtype),
                "sparse": False,
                "name": input_name,
            },
            "inbound_nodes": [],
        }
    ]
    for i, (entry, node, _) in enumerate(model.entries()):  # Keras keeps ``activation`` inside the layer
        type_name = type(node.layer).__name__
        where = f"{source}: model.layers[{i}] ({entry}, {type_name})"
        # get_config holds the keys the data filled in (an Embedding's input_dim), the spec entry the rest
        merged = {k: v for k, v in node.layer.get_config().items() if v is not None or k == "merge_mode"}
        cfg = _layer_config(where, type_name, {**merged, **node.spec, "name": entry})
        refs = []
        for name, idx in node.refs:
            shape = shapes[name] if idx is None else shapes[name][idx]
            refs.append(_tensor(input_name if name == INPUT else name, idx or 0, shape))
        kwargs = {}
        if type_name in ("Add", "Concatenate", "Multiply", "Subtract", "Average", "Maximum", "Minimum", "Dot"):
            args = [refs]
        elif type_name == "MultiHeadAttention":
            args = [refs[0], refs[1] if len(refs) > 1 else refs[0]]
            if len(refs) > 2:
                kwargs["key"] = refs[2]
            if node.layer.causal:
                kwargs["use_causal_mask"] = True
        else:
            args = refs[:1]
            if len(refs) > 1:
                kwargs["initial_state"] = refs[1:]
        in_shapes = [list(s) for s in node.layer.input_shapes]
        build = (
            {"input_shape": [None, *in_shapes[0]]}
            if len(in_shapes) == 1
            else {"input_shape": [[None, *s] for s in in_shapes]}
        )
        if type_name == "MultiHeadAttention":
            build = {
                "shapes_dict": {
                    "query_shape": [None, *in_shapes[0]],
                    "value_shape": [None, *(in_shapes[1] if len(in_shapes) > 1 else in_shapes[0])],
                }
            }
        layers.append(
            {
                "module": "keras.layers",
                "class_name": type_name,
                "config": cfg,
                "registered_name": None,
                "build_config": build,
                "name": entry,
                "inbound_nodes": [{"args": args, "kwargs": kwargs}],
            }
        )
        shapes[entry] = node.output_shape
    last = model.nodes[-1]
    if isinstance(last.output_shape, list):
        raise SpecError(f"{source}: model.layers[-1]: cannot be exported to Keras: the last layer has several outputs")
    return {
        "module": "keras.src.models.functional",
        "class_name": "Functional",
        "registered_name": "Functional",
        "config": {
            "name": str(spec.name or "nnctl_model"),
            "trainable": True,
            "layers": layers,
            "input_layers": [[input_name, 0, 0]],
            "output_layers": [[last.name, 0, 0]],
        },
        "build_config": {"input_shape": [None, *model.input_shape]},
    }


def _sub_vars(layer) -> list[tuple[str, list[str]]]:
    """(sub-path, nnctl param/state names in Keras's variable order) for one layer's weight groups."""
    t = type(layer).__name__
    keys = [*layer.params, *layer.state]
    if t in ("SimpleRNN", "LSTM", "GRU"):
        return [("", []), ("cell", keys)]
    if t == "Bidirectional":
        return [
            ("", []),
            ("backward_layer", []),
            ("backward_layer/cell", [k for k in keys if k.startswith("backward_")]),
            ("forward_layer", []),
            ("forward_layer/cell", [k for k in keys if k.startswith("forward_")]),
        ]
    if t == "MultiHeadAttention":
        out = [("", [])]
        for keras_name, prefix in (
            ("key_dense", "key_"),
            ("output_dense", "output_"),
            ("query_dense", "query_"),
            ("value_dense", "value_"),
        ):
            out.append((keras_name, [k for k in keys if k.startswith(prefix)]))
        return out
    if t == "TimeDistributed":
        return [("", []), ("layer", keys)]
    return [("", keys)]


def write_weights(model) -> bytes:
    """model.weights.h5 bytes in Keras 3's layout."""
    import h5py

    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        top = f.create_group("layers")
        top.create_group("input_layer").create_group("vars")
        used: dict[str, int] = {"input_layer": 0}
        for _, node, _ in model.entries():  # an Activation node of an ``activation`` key has no Keras layer
            base = _snake(type(node.layer).__name__)
            key = base if base not in used else f"{base}_{used[base] + 1}"
            used[base] = used.get(base, -1) + 1
            g = top.create_group(key)
            arrays = {**node.layer.params, **node.layer.state}
            for sub, names in _sub_vars(node.layer):
                vg = (g.require_group(sub) if sub else g).create_group("vars")
                for i, name in enumerate(names):
                    vg.create_dataset(str(i), data=np.asarray(B.to_numpy(arrays[name])))
        f.create_group("vars")
    return buf.getvalue()


def export_keras(path, output: str | None = None) -> dict:
    """Write the checkpoint as a .keras archive; returns what was written."""
    ck, model, prep, spec = restore(path, "cpu")

    refuse_named(spec, "export", str(path))
    if spec.model.decode is not None:
        raise SpecError(
            f"{path}: model.decode: cannot be exported to Keras: greedy decoding is a loop outside the model"
        )
    config = keras_config(model, spec, str(path))
    weights = write_weights(model)
    meta = {
        "keras_version": "3.0.0",
        "date_saved": "",
        "nnctl_version": __version__,
        "nnctl_preprocessing": {
            "rescale": prep.rescale,
            "normalize": prep.normalize,
            "x_shift": None if prep.x_shift is None else prep.x_shift.tolist(),
            "x_scale": None if prep.x_scale is None else prep.x_scale.tolist(),
            "note": "apply x' = (x * rescale - x_shift) / x_scale before the model",
        },
        "nnctl_classes": None if prep.classes is None else [str(c) for c in prep.classes],
    }
    out = pathlib.Path(output) if output else pathlib.Path(path).with_suffix(".keras")

    def write(tmp):
        with zipfile.ZipFile(tmp, "w") as z:
            z.writestr("metadata.json", json.dumps(meta))
            z.writestr("config.json", json.dumps(config))
            z.writestr("model.weights.h5", weights)

    atomic_write(out, write)
    return {"output": str(out), "format": "keras", "layers": len(model.entries())}
