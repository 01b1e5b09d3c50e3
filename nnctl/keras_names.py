"""Keras habits in a spec, rewritten to nnctl's spelling before validation (the stored spec keeps nnctl's).

- ``input_shape`` / ``input_dim`` on the first layer, or a first ``{type = "Input", shape = [...]}``
  -> ``model.input_shape``
- ``train.validation_split = f`` and ``data.validation = f`` -> ``data.validation = {split = f}``
- ``lr`` in the optimizer table -> ``learning_rate``
- ImageDataGenerator keys in ``data.augment``: ``rotation_range`` -> ``rotation``, ``width_shift_range`` ->
  ``width_shift``, ``height_shift_range`` -> ``height_shift``, ``zoom_range`` -> ``zoom``,
  ``shear_range`` -> ``shear``, ``horizontal_flip``/``vertical_flip = true`` -> ``flip``
Keras names nnctl does not support get a problem line that names the nnctl way.
"""

from __future__ import annotations

from nnctl.augmentations import keras_renames
from nnctl.fields import shown

AUGMENT_RENAMES = keras_renames()  # each augmentation declares its ImageDataGenerator spellings
AUGMENT_UNSUPPORTED = {
    "brightness_range": "nnctl's brightness is an additive shift: write brightness = 0.2 (a fraction of the "
    "batch's value range) or contrast = 0.2",
    "channel_shift_range": "use brightness (an additive shift) instead",
    "rescale": 'rescale belongs in [data]: data.rescale = "1/255"',
    "featurewise_center": 'use data.normalize = "standard"',
    "featurewise_std_normalization": 'use data.normalize = "standard"',
    "validation_split": "use data.validation = { split = 0.2 }",
}


def rewrite(raw: dict) -> list[str]:
    """Rewrite Keras spellings in ``raw`` (a parsed spec, modified in place); returns the problems found."""
    problems: list[str] = []
    model = raw.get("model") if isinstance(raw.get("model"), dict) else None
    data = raw.get("data") if isinstance(raw.get("data"), dict) else None
    train = raw.get("train") if isinstance(raw.get("train"), dict) else None
    if model is not None and isinstance(model.get("layers"), list):
        _input_layer(model, problems)
    if train is not None and "validation_split" in train:
        split = train.pop("validation_split")
        if data is not None and data.get("validation") is not None:
            problems.append("train.validation_split: data.validation is also set; keep one of them")
        elif data is not None:
            data["validation"] = {"split": split}
    if (
        data is not None
        and isinstance(data.get("validation"), (int, float))
        and not isinstance(data.get("validation"), bool)
    ):
        data["validation"] = {"split": data["validation"]}
    if train is not None and isinstance(train.get("optimizer"), dict) and "lr" in train["optimizer"]:
        opt = train["optimizer"]
        if "learning_rate" in opt:
            problems.append("train.optimizer.lr: learning_rate is also set; keep one of them")
        else:
            opt["learning_rate"] = opt.pop("lr")
    if data is not None and isinstance(data.get("augment"), dict):
        _augment(data["augment"], problems)
    return problems


def _input_layer(model: dict, problems: list[str]) -> None:
    layers = model["layers"]
    first = layers[0] if layers and isinstance(layers[0], dict) else None
    if first is None:
        return
    shape, where = None, None
    if str(first.get("type", "")).lower() in ("input", "inputlayer"):
        shape, where = first.get("shape", first.get("input_shape")), "model.layers[0].shape"
        if shape is None:
            problems.append("model.layers[0].shape: required key is missing for Input")
        del layers[0]
    else:
        for key in ("input_shape", "input_dim"):
            if key in first and not (key == "input_dim" and str(first.get("type", "")).lower() == "embedding"):
                value = first.pop(key)
                shape, where = ([value] if key == "input_dim" else value), f"model.layers[0].{key}"
    for i, entry in enumerate(layers[1:], 1):
        if isinstance(entry, dict) and "input_shape" in entry:
            problems.append(f"model.layers[{i}].input_shape: only the first layer may give the input shape")
    if shape is None:
        return
    if isinstance(shape, list) and shape and shape[0] is None:  # Keras's batch axis, written by habit
        shape = shape[1:]
    if model.get("input_shape") is not None and model["input_shape"] != shape:
        problems.append(f"{where}: {shown(shape)} disagrees with model.input_shape = {shown(model['input_shape'])}")
        return
    model["input_shape"] = shape


def _augment(aug: dict, problems: list[str]) -> None:
    for old, new in AUGMENT_RENAMES.items():
        if old in aug:
            if new in aug:
                problems.append(f"data.augment.{old}: {new} is also set; keep one of them")
                continue
            aug[new] = aug.pop(old)
    flips = [axis for axis in ("horizontal", "vertical") if aug.pop(f"{axis}_flip", False) is True]
    if flips:
        if "flip" in aug:
            problems.append("data.augment.horizontal_flip: flip is also set; keep one of them")
        else:
            aug["flip"] = "both" if len(flips) == 2 else flips[0]
    for key, hint in AUGMENT_UNSUPPORTED.items():
        if key in aug:
            problems.append(f"data.augment.{key}: not an nnctl key; {hint}")
            del aug[key]
