"""``nnctl import``: a Keras model (.keras archive or legacy .h5) -> an nnctl spec file and checkpoint.

Only the JSON config and the HDF5 datasets are read; no Python object is ever deserialised, so a
layer that carries code (Lambda, a custom registered class, a serialised function as activation) is
refused by name. Sequential and functional models with one input and the last layer as their output
map one Keras layer to one nnctl layer of the same type and name; keys that change the maths and
that nnctl lacks (``data_format = "channels_first"``, GRU ``reset_after = false``, ``groups`` > 1...)
are refused with the layer's name, and keys that only matter to Keras's training or storage
(constraints, dtype policies, seeds) are dropped.
"""

from __future__ import annotations

import json
import pathlib
import zipfile

from nnctl import spec as spec_mod
from nnctl import toml_write
from nnctl.build import build_model
from nnctl.checkpoint import load_into, save
from nnctl.data.preprocess import Preprocessor, task_of
from nnctl.errors import CheckpointError, SpecError, quote
from nnctl.fields import params_of
from nnctl.fs import atomic_write
from nnctl.interop.keras_weights import named_for_model
from nnctl.layers import LAYERS, layer_class
from nnctl.registry import FAMILIES, UnknownName
from nnctl.spec_model import ModelFacts

MAX_CONFIG_BYTES = 64 * 2**20
#: Keras keys that do not change what a layer computes at inference (dropped)
DROPPED = {
    "dtype",
    "kernel_constraint",
    "bias_constraint",
    "recurrent_constraint",
    "beta_constraint",
    "gamma_constraint",
    "embeddings_constraint",
    "depthwise_constraint",
    "pointwise_constraint",
    "activity_regularizer",
    "recurrent_regularizer",
    "beta_regularizer",
    "gamma_regularizer",
    "embeddings_regularizer",
    "depthwise_regularizer",
    "pointwise_regularizer",
    "alpha_regularizer",
    "alpha_constraint",
    "seed",
    "unroll",
    "implementation",
    "recurrent_dropout",
    "sparse",
    "ragged",
    "optional",
    "lora_rank",
    "lora_alpha",
    "quantization_config",
    "zero_output_for_mask",
    "noise_shape",
    "renorm",
    "renorm_clipping",
    "renorm_momentum",
    "synchronized",
    "rms_scaling",
    "input_length",
    "embeddings_initializer_config",
    "autocast",
    "backward_layer",
    "build_config",
    "time_major",
    "batch_input_shape",
    "batch_shape",
    "input_shape",
}  # the input shape is read from the first layer
#: Keras values nnctl computes the same way (other values of these keys are refused)
REQUIRED = {
    "data_format": ("channels_last", None),
    "groups": (1, None),
    "reset_after": (True,),
    "stateful": (False,),
    "use_gate": (False, None),
    "sliding_window": (None,),
    "attention_axes": (None, [1], 1),
    "interpolation": ("nearest",),
    "use_cudnn": ("auto", True, False, None),
    "flash_attention": (None, False),
}


def read_config(path) -> tuple[dict, dict | None]:
    """(model config, compile config or None) of a .keras archive or a legacy whole-model .h5."""
    p = pathlib.Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: file not found")
    if zipfile.is_zipfile(p):
        with zipfile.ZipFile(p) as z:
            if "config.json" not in z.namelist():
                raise CheckpointError(f"{p}: a zip archive without config.json; not a .keras model")
            if z.getinfo("config.json").file_size > MAX_CONFIG_BYTES:
                raise CheckpointError(f"{p}: config.json is larger than {MAX_CONFIG_BYTES} bytes")
            doc = json.loads(z.read("config.json"))
        return doc, doc.get("compile_config")
    import h5py

    try:
        with h5py.File(p, "r") as f:
            if "model_config" not in f.attrs:
                raise CheckpointError(
                    f"{p}: an HDF5 file without model_config: a weights-only file has no "
                    f"architecture to import; use it as model.init_from in a spec instead"
                )
            raw = f.attrs["model_config"]
            training = f.attrs.get("training_config")
    except OSError as exc:
        raise CheckpointError(f"{p}: not a readable HDF5 file ({exc})") from None
    doc = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    compile_cfg = None
    if training is not None:
        compile_cfg = json.loads(training.decode() if isinstance(training, bytes) else training)
    return doc, compile_cfg


def _where(i, cfg) -> str:
    return f"layers[{i}] ({cfg.get('config', {}).get('name', '?')}, {cfg.get('class_name', '?')})"


def _named(family: str, value):
    """A Keras initializer/activation value as nnctl's name, or None when nnctl has no such entry."""
    name = value.get("class_name") if isinstance(value, dict) else value
    if not isinstance(name, str):
        return None
    try:
        return FAMILIES[family].canonical(name)
    except UnknownName:
        return None


def convert_layer(where: str, cfg: dict) -> dict:
    """One Keras layer config {class_name, config} -> an nnctl layer entry (no wiring)."""
    cls_name = cfg.get("class_name")
    if (
        cls_name == "Lambda"
        or cfg.get("registered_name") not in (None, cls_name)
        and "Custom" in str(cfg.get("registered_name"))
    ):
        raise SpecError(f"{where}: a {cls_name} layer holds Python code; nnctl never runs code from a model file")
    if not isinstance(cls_name, str) or cls_name not in LAYERS:
        raise SpecError(f"{where}: nnctl has no {quote(cls_name)} layer")
    cls = layer_class(cls_name)
    accepted = params_of(cls)
    keras = dict(cfg.get("config") or {})
    entry: dict = {"type": cls.__name__}
    for key, value in keras.items():
        if key in REQUIRED:
            if value not in REQUIRED[key]:
                raise SpecError(
                    f"{where}: {key} = {quote(json.dumps(value))} is not supported (nnctl computes "
                    f"{key} = {json.dumps(REQUIRED[key][0])})"
                )
            continue
        if key in DROPPED or key == "trainable" and value is True:
            continue
        if key in ("layer",) and isinstance(value, dict):  # Bidirectional, TimeDistributed
            inner = convert_layer(f"{where}.layer", value)
            entry["layer"] = {k: v for k, v in inner.items() if k not in ("name", "trainable")}
            continue
        if key.endswith("initializer"):
            name = _named("initializer", value)
            if name is not None and key in accepted:
                entry[key] = name
            continue
        if key in ("activation", "recurrent_activation"):
            name = _named("activation", value)
            if name is None or isinstance(value, dict) and value.get("class_name") not in (None, name):
                raise SpecError(f"{where}: {key} {quote(json.dumps(value))} is not an activation nnctl knows")
            entry[key] = name
            continue
        if key.endswith("regularizer"):
            if value is not None:
                reg = dict(value.get("config") or {}) if isinstance(value, dict) else {}
                entry[key] = {"type": "l1_l2", "l1": float(reg.get("l1", 0.0)), "l2": float(reg.get("l2", 0.0))}
            continue
        if key == "axis" and isinstance(value, list) and len(value) == 1:  # Keras 3 writes [-1]
            value = value[0]
        if key not in accepted:
            if value in (None, False, 0, 0.0, [], {}):  # an option left off is the maths nnctl does
                continue
            raise SpecError(f"{where}: key {key} = {quote(json.dumps(value))} has no nnctl equivalent")
        if value is not None or key == "merge_mode":  # None is the default, but Bidirectional's means two outputs
            entry[key] = value
    return entry


def _refs(args) -> list[tuple[str, int]]:
    """Keras 3 call arguments -> [(layer name, tensor index)] of the keras tensors they hold."""
    out = []
    if isinstance(args, dict) and args.get("class_name") == "__keras_tensor__":
        name, _, idx = args["config"]["keras_history"]
        return [(name, idx)]
    if isinstance(args, (list, tuple)):
        for a in args:
            out += _refs(a)
    return out


def _inbound(where: str, layer: dict) -> tuple[list[tuple[str, int]], dict]:
    nodes = layer.get("inbound_nodes") or []
    if len(nodes) > 1:
        raise SpecError(f"{where}: a layer called {len(nodes)} times (shared weights) has no nnctl form")
    if not nodes:
        return [], {}
    node = nodes[0]
    if isinstance(node, dict):  # Keras 3
        return _refs(node.get("args", [])) + _refs(list((node.get("kwargs") or {}).values())), node.get("kwargs") or {}
    refs, kwargs = [], {}
    for item in node:  # Keras 2: [name, node index, tensor index, kwargs]
        refs.append((item[0], int(item[2])))
        kwargs.update(item[3] if len(item) > 3 and isinstance(item[3], dict) else {})
    return refs, kwargs


def spec_from_config(doc: dict, source: str) -> tuple[dict, list]:
    """The nnctl ``model`` section of a Keras model config -> (model section, Keras layer names in order)."""
    if doc.get("class_name") not in ("Sequential", "Functional", "Model"):
        raise SpecError(
            f"{source}: a {quote(doc.get('class_name'))} model: nnctl imports Sequential and functional models"
        )
    cfg = doc.get("config") or {}
    layers = cfg.get("layers") or []
    functional = doc["class_name"] != "Sequential"
    if functional and len(cfg.get("input_layers") or []) > 1 and isinstance(cfg["input_layers"][0], list):
        raise SpecError(f"{source}: a model with {len(cfg['input_layers'])} inputs; nnctl models have one")
    input_shape, input_name, entries, names = None, None, [], []
    for i, layer in enumerate(layers):
        where = f"{source}: {_where(i, layer)}"
        conf = layer.get("config") or {}
        if layer.get("class_name") == "InputLayer":
            if input_shape is not None:
                raise SpecError(f"{where}: a second input; nnctl models have one")
            input_shape = list((conf.get("batch_shape") or conf.get("batch_input_shape"))[1:])
            input_name = conf.get("name")
            continue
        if input_shape is None and (conf.get("batch_input_shape") or conf.get("batch_shape")):
            input_shape = list((conf.get("batch_input_shape") or conf.get("batch_shape"))[1:])
        entry = convert_layer(where, layer)
        entry["name"] = conf.get("name") or entry["type"].lower()
        if functional:
            refs, kwargs = _inbound(where, layer)
            if kwargs.get("use_causal_mask"):
                entry["causal"] = True
            if kwargs.get("mask") is not None or kwargs.get("initial_state") is not None and not refs:
                raise SpecError(f"{where}: call arguments {sorted(kwargs)} have no nnctl form")
            wired = ["input" if n == input_name else (n if idx == 0 else f"{n}:{idx}") for n, idx in refs]
            if wired != [names[-1] if names else "input"]:
                entry["inputs"] = wired
        entries.append(entry)
        names.append(entry["name"])
    if input_shape is None or any(d is None for d in input_shape):
        raise SpecError(
            f"{source}: the model's input shape {input_shape} is not fully known; nnctl needs every axis but the batch"
        )
    if not entries:
        raise SpecError(f"{source}: the model has no layers")
    outputs = cfg.get("output_layers")
    if functional and outputs:
        outs = outputs if isinstance(outputs[0], list) else [outputs]
        if len(outs) != 1 or outs[0][0] != names[-1]:
            raise SpecError(
                f"{source}: the model's output {[o[0] for o in outs]} is not its last layer "
                f"({names[-1]}); nnctl's output is the last layer"
            )
    return {"input_shape": input_shape, "layers": entries}, names


def _loss_for(compile_cfg: dict | None, last: dict) -> str:
    """The compiled loss when it is a name nnctl knows, else the usual loss for the output activation."""
    loss = (compile_cfg or {}).get("loss")
    if isinstance(loss, dict):
        loss = loss.get("class_name") or (loss.get("config") or {}).get("name")
    if isinstance(loss, str):
        try:
            return FAMILIES["loss"].canonical(loss)
        except UnknownName:
            pass
    act = last.get("activation")
    return {"softmax": "categorical_crossentropy", "sigmoid": "binary_crossentropy"}.get(act, "mean_squared_error")


def import_keras(path, spec_out: str | None = None, ckpt_out: str | None = None) -> dict:
    """Write an nnctl spec and checkpoint for a Keras model file; returns what was written."""
    src = pathlib.Path(path)
    doc, compile_cfg = read_config(src)
    model_section, _ = spec_from_config(doc, str(src))
    spec_path = pathlib.Path(spec_out) if spec_out else src.with_suffix(".toml")
    ckpt_path = pathlib.Path(ckpt_out) if ckpt_out else src.with_name(src.stem + ".nnctl.h5")
    loss = _loss_for(compile_cfg, model_section["layers"][-1])
    name = str((doc.get("config") or {}).get("name") or src.stem)
    raw = {
        "name": name,
        "seed": 0,
        "data": {"train": "data.csv"},  # to train further: point this at the data
        "model": model_section,
        "train": {"loss": loss},
        "output": {"checkpoint": _relative(ckpt_path, spec_path.parent)},
    }
    spec = spec_mod.validate(raw, str(spec_path), base_dir=spec_path.resolve().parent)
    integer_input = model_section["layers"][0]["type"] == "Embedding"
    input_dtype = "int64" if integer_input else spec.dtype
    model = build_model(spec, model_section["input_shape"], spec.seed, {}, input_dtype=input_dtype)
    weights, state = named_for_model(src, model)
    loaded, _ = load_into(model, weights, state, str(src), strict=True)
    prep = Preprocessor("arrays", task_of(loss))
    save(
        ckpt_path,
        spec=spec.to_dict(),
        weights=model.named_params(),
        state=model.named_state(),
        prep_arrays=prep.to_arrays(),
        history={},
        seed=spec.seed,
        epoch=0,
        best_epoch=None,
        optimizer={"type": "adam", "iterations": 0, "config": {}, "slots": {}},
        resume=None,
        facts=ModelFacts({}, input_dtype).to_dict(),
    )

    text = write_spec_text(raw, spec_path.suffix, src)
    atomic_write(spec_path, lambda tmp: pathlib.Path(tmp).write_text(text))
    return {
        "spec": str(spec_path),
        "checkpoint": str(ckpt_path),
        "layers": len(model_section["layers"]),
        "arrays": len(loaded),
        "loss": loss,
    }


def _relative(path: pathlib.Path, base: pathlib.Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path.resolve())


def write_spec_text(raw: dict, suffix: str, source) -> str:
    """The spec as TOML (default), YAML or JSON text."""
    if suffix == ".json":
        return json.dumps(raw, indent=2) + "\n"
    if suffix in (".yaml", ".yml"):
        import yaml

        return f"# imported from {source} by nnctl import\n" + yaml.safe_dump(raw, sort_keys=False)
    return (
        f"# imported from {source} by nnctl import; data.train is a placeholder to point at your data\n"
        + toml_write.dump(raw, skip_null=False)
    )
