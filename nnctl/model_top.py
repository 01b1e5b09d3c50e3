"""``model.include_top = false``: drop the layers ``model.top`` names, as Keras's ``include_top=False``.

``model.top`` is either the names of the model's trailing layers, in order (``["flatten", "fc1", "fc2",
"predictions"]``), or the name of the first of them (``"flatten"``: it and every layer after it). With
``include_top = true`` (the default) the top only has to be valid; with ``false`` those layers are
removed and the model ends at the layer before them: a feature extractor. Its loss no longer suits
its output, so the loss/activation check is skipped; training it on labels stops on the shape check
(``nnctl.assemble.check_targets``), which then names the removed top (``Spec.top_removed``). The spec that comes out lists
only the layers built (``include_top = true`` and no ``top``), so validating it again, as
``--resume`` does, builds the same model.
"""

from __future__ import annotations

from nnctl.fields import shown
from nnctl.registry import suggestion


def top_names(top, layers: list[dict]) -> tuple[list[str], list[str]]:
    """The layer names ``model.top`` covers, checked against the validated ``layers``: (names, problems)."""
    names = [e.get("name") for e in layers]
    if isinstance(top, str):
        if top not in names:
            return [], [f"model.top: no layer named {top!r} in model.layers{suggestion(top, names)}"]
        return names[names.index(top) :], []
    if not isinstance(top, list) or not top or not all(isinstance(t, str) for t in top):
        return [], [f"model.top: expected a list of layer names or the name of the first top layer, found {shown(top)}"]
    problems = [
        f"model.top[{i}]: no layer named {t!r} in model.layers{suggestion(t, names)}"
        for i, t in enumerate(top)
        if t not in names
    ]
    problems += [f"model.top[{i}]: {t!r} is listed twice" for i, t in enumerate(top) if t in top[:i]]
    if problems:
        return [], problems
    tail = names[len(names) - len(top) :]
    if top != tail:
        return [], [
            f"model.top: expected the model's last {len(top)} layers in order ({', '.join(tail)}), found "
            f"{', '.join(top)}; the top is the layers at the end of model.layers"
        ]
    return list(top), []


def apply(spec: dict) -> tuple[list[str], list[str]]:
    """Check ``model.top`` and, under ``include_top = false``, remove it from the spec: (problems, removed names)."""
    model = spec["model"]
    top, include = model.get("top"), model.get("include_top", True)
    layers = model["layers"]
    if top is None:
        if include is False:
            return [
                "model.include_top: false needs model.top, the names of the top layers (or the first of "
                "them) to remove; found no model.top"
            ], []
        return [], []
    names, problems = top_names(top, layers)
    if problems or include is not False:
        return problems, []
    if len(names) == len(layers):
        return [f"model.top: names every layer ({', '.join(names)}); include_top = false would leave no model"], []
    model["layers"] = layers[: len(layers) - len(names)]
    model["include_top"], model["top"] = True, None  # the spec now describes the model built
    return [], names
