"""Read the weights of Keras files as nnctl's named arrays (``layer/param``), datasets only.

Layouts read:
- legacy HDF5 (Keras 2, ``keras.applications`` weights such as vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5,
  and ``model.save("x.h5")``): root (or ``/model_weights``) attribute ``layer_names``; each layer group has
  ``weight_names`` (``block1_conv1/kernel:0``...) naming its datasets, in the layer's weight order;
- Keras 3 ``*.weights.h5`` and the ``model.weights.h5`` inside a ``.keras`` archive: ``layers/<name>/vars/<i>``
  (sub-layers' variables below the layer's group, in their creation order).
A Keras weight maps to an nnctl parameter by its name where the file gives one (``kernel``,
``moving_mean``, ``forward_lstm/.../kernel`` -> ``forward_kernel``), else by position: nnctl keeps
every layer's parameters and then its state in Keras's weight order. Nothing but HDF5 datasets and
attributes is read: no pickled objects, no links outside the file.
"""

from __future__ import annotations

import io
import pathlib
import zipfile

import numpy as np

from nnctl.checkpoint import Checkpoint
from nnctl.errors import CheckpointError

MAX_ARCHIVE_MEMBER = 4 * 2**30  # a .keras member larger than this is refused before it is read


def is_keras_file(path) -> bool:
    """A .keras archive, or an HDF5 file in a Keras layout (not an nnctl checkpoint)."""
    p = pathlib.Path(path)
    if p.suffix == ".keras" or (p.is_file() and zipfile.is_zipfile(p)):
        return True
    if not p.is_file():
        return False
    import h5py

    try:
        with h5py.File(p, "r") as f:
            if "spec" in f and "weights" in f:  # an nnctl checkpoint
                return False
            return "layer_names" in f.attrs or "model_weights" in f or "layers" in f
    except OSError:
        return False


def _text(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _legacy(group, source: str) -> dict[str, list[tuple[str, np.ndarray]]]:
    out = {}
    for layer in _text(group.attrs["layer_names"]):
        if layer not in group:
            raise CheckpointError(f"{source}: layer {layer!r} is listed in layer_names but has no group")
        g = group[layer]
        names = _text(g.attrs.get("weight_names", []))
        arrays = []
        for name in names:
            ds = g.get(name)
            if ds is None or not hasattr(ds, "shape"):
                raise CheckpointError(f"{source}: /{layer}/{name} is listed in weight_names but missing")
            arrays.append((name, np.asarray(ds[()])))
        out[layer] = arrays
    return out


def _keras3(group) -> dict[str, list[tuple[str, np.ndarray]]]:
    """``layers/<key>/...`` groups, keyed by the layer's name (the ``name`` attribute of its ``vars``; the
    group key is the class's snake-case name), with every ``vars/<i>`` dataset below it."""
    out = {}
    layers = group["layers"] if "layers" in group else group
    for key in layers:
        g = layers[key]
        name = g["vars"].attrs.get("name", key) if "vars" in g else key
        arrays: list[tuple[str, np.ndarray]] = []
        _collect(g, key, arrays)
        out[name.decode() if isinstance(name, bytes) else str(name)] = arrays
    return out


def _collect(group, path: str, arrays: list) -> None:
    import h5py

    if "vars" in group:
        vars_ = group["vars"]
        for key in sorted(vars_, key=lambda k: int(k) if k.isdigit() else -1):
            if isinstance(vars_[key], h5py.Dataset):
                arrays.append((f"{path}/vars/{key}", np.asarray(vars_[key][()])))
    for key in group:
        if key != "vars" and isinstance(group[key], h5py.Group):
            _collect(group[key], f"{path}/{key}", arrays)


def read_keras_weights(path) -> dict[str, list[tuple[str, np.ndarray]]]:
    """Every layer's weights in a Keras file: {layer name: [(weight name, array), ...]} in Keras's order."""
    import h5py

    p = pathlib.Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: file not found")
    try:
        if zipfile.is_zipfile(p):
            with zipfile.ZipFile(p) as z:
                info = z.getinfo("model.weights.h5") if "model.weights.h5" in z.namelist() else None
                if info is None:
                    raise CheckpointError(f"{p}: a .keras archive without model.weights.h5")
                if info.file_size > MAX_ARCHIVE_MEMBER:
                    raise CheckpointError(f"{p}: model.weights.h5 is {info.file_size} bytes, over the limit")
                data = z.read(info)
            with h5py.File(io.BytesIO(data), "r") as f:
                return _keras3(f)
        with h5py.File(p, "r") as f:
            group = f["model_weights"] if "model_weights" in f else f
            if "layer_names" in group.attrs:
                return _legacy(group, str(p))
            if "layers" in group:
                return _keras3(group)
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{p}: not a readable Keras weights file ({exc})") from None
    raise CheckpointError(f"{p}: an HDF5 file but not in a Keras layout (no layer_names attribute, no layers group)")


_SCOPES = {
    "query": "query_",
    "query_dense": "query_",
    "key": "key_",
    "key_dense": "key_",
    "value": "value_",
    "value_dense": "value_",
    "attention_output": "output_",
    "output_dense": "output_",
    "forward_layer": "forward_",
    "backward_layer": "backward_",
}


def _param_name(weight_name: str) -> tuple[str, str | None]:
    """(nnctl prefix, parameter name) of a Keras weight: ``bi/forward_lstm/lstm_cell/kernel:0`` ->
    ("forward_", "kernel"); a Keras 3 ``.../vars/0`` has no name (None), only its place."""
    parts = weight_name.split(":")[0].split("/")
    prefix = ""
    for part in parts[1:-1]:
        if part in _SCOPES:
            prefix = _SCOPES[part]
        elif part.startswith("forward_"):
            prefix = "forward_"
        elif part.startswith("backward_"):
            prefix = "backward_"
    return prefix, (None if parts[-1].isdigit() else parts[-1])


def layer_arrays(node_layer, keras_weights: list[tuple[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """One nnctl layer's {param or state name: array} from its Keras weights: by name where the file names
    them, else by place within each sub-layer (nnctl keeps Keras's weight order); {} when they do not fit."""
    keys = [*node_layer.params, *node_layer.state]
    scoped = [_param_name(n) for n, _ in keras_weights]
    out: dict[str, np.ndarray] = {}
    by_prefix: dict[str, list[np.ndarray]] = {}
    for (prefix, name), (_, arr) in zip(scoped, keras_weights):
        if name is not None:
            out[prefix + name] = arr
        else:
            by_prefix.setdefault(prefix, []).append(arr)
    scopes = set(_SCOPES.values())
    for prefix, arrays in by_prefix.items():
        mine = (
            [k for k in keys if k.startswith(prefix)]
            if prefix
            else [k for k in keys if not any(k.startswith(s) for s in scopes)]
        )
        if len(mine) != len(arrays):
            return {}
        out.update(zip(mine, arrays))
    if set(out) <= set(keys):
        return out
    if len(keras_weights) == len(keys):  # names nnctl spells otherwise (Keras 3's DepthwiseConv2D "kernel"): by place
        return {k: a for k, (_, a) in zip(keys, keras_weights)}
    return {}


def named_for_model(path, model) -> tuple[dict, dict]:
    """(weights, state) for ``checkpoint.load_into``: a Keras file's arrays under nnctl's ``layer/param`` names,
    for the model's layers that a Keras layer of the same name matches."""
    by_layer = read_keras_weights(path)
    weights, state = {}, {}
    for node in model.nodes:
        found = by_layer.get(node.layer.name)
        if not found:
            continue
        for key, arr in layer_arrays(node.layer, found).items():
            (state if key in node.layer.state else weights)[f"{node.layer.name}/{key}"] = arr
    return weights, state


def init_arrays(path, model) -> tuple[dict, dict]:
    """The (weights, state) ``model.init_from`` loads: an nnctl checkpoint's, or a Keras file's by layer name."""
    if is_keras_file(path):
        return named_for_model(path, model)

    src = Checkpoint(path)
    return src.weights, src.state
