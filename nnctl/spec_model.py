"""The validated spec as one frozen typed object: ``Spec``, its sections the dataclasses of ``nnctl.spec_sections``.

``nnctl.spec.validate`` checks a raw dict and ends with ``typed``; everything downstream reads attributes
(``spec.train.epochs``, ``spec.data.validation.split``, ``spec.train.loss.type``) and changes nothing in place:
a changed spec is ``dataclasses.replace(spec, output=replace(spec.output, checkpoint=path))``.

- A sub-table is its class (``spec.train.early_stopping`` is an ``EarlyStopping`` or None); its defaults are
  filled (except ``data.augment`` and ``data.missing``, which hold only the keys given).
- A registered name with parameters (``train.loss``, ``train.optimizer``, a named output's loss, a GAN's
  optimizers) is a ``Named(type, params)``.
- A layer entry stays the mapping the validator normalised: ``type``, ``name``, ``inputs`` and the layer
  constructor's keyword arguments, exactly as ``Layer.get_config`` returns them.
- ``Spec.to_dict()`` is the JSON a checkpoint stores; ``Spec.from_dict`` reads one back (old checkpoints'
  private keys, ``_defaults`` and ``_input_dtype``, are left to ``ModelFacts.from_stored``).
- What is not the user's spec lives beside it: ``Spec.source`` (the file it came from), ``Spec.top_removed``
  (the layers ``model.include_top = false`` removed), ``Spec.set_keys`` (keys ``--set`` changed, which
  ``--resume`` accepts); facts learned from the data travel as ``ModelFacts``.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Any

from nnctl.errors import SpecError
from nnctl.spec_sections import DataSection, ModelSection, OutputSection, TrainSection
from nnctl.spec_table import Named, Table, table_class, to_plain


def _local(default, **kw) -> Any:
    """A field beside the spec, never stored in a checkpoint nor compared."""
    return dataclasses.field(default=default, compare=False, metadata={"stored": False}, **kw)


@dataclasses.dataclass(frozen=True)
class Spec(Table):
    """One validated spec: the top-level keys and the four sections, typed; ``source`` names its file."""

    name: str
    seed: int
    dtype: str
    data: DataSection
    model: ModelSection
    train: TrainSection
    output: OutputSection
    tune: dict | None = None
    extends: str | None = None
    source: str = _local("spec")
    top_removed: tuple[str, ...] = _local(())
    set_keys: tuple[str, ...] = _local(())

    @property
    def checkpoint(self) -> str:
        """``output.checkpoint``, which validation against the spec's folder always fills."""
        if not self.output.checkpoint:
            raise SpecError(f"{self.source}: output.checkpoint: required key is missing")
        return self.output.checkpoint

    def to_dict(self) -> dict:
        """The spec as the checkpoint stores it (``/spec``): plain JSON data, nothing private."""
        return self.to_plain()

    @classmethod
    def from_dict(cls, stored: dict, source: str = "spec") -> Spec:
        """A stored, already validated spec (a checkpoint's ``/spec``) as a Spec; private keys are skipped."""
        return typed(stored, source)


@dataclasses.dataclass(frozen=True)
class ModelFacts:
    """What the model build learned from the data, which a checkpoint needs to rebuild it without the data.

    ``defaults``: layer keys the data supplies (an Embedding's ``input_dim`` from the vocabulary);
    ``input_dtype``: the dtype of the model's input array (integer ids stay integers)."""

    defaults: dict = dataclasses.field(default_factory=dict)
    input_dtype: str | None = None
    sample_shape: list[int] | None = None  # a GAN: the data's sample shape, the generator's output

    def to_dict(self) -> dict:
        return {"defaults": dict(self.defaults), "input_dtype": self.input_dtype, "sample_shape": self.sample_shape}

    @classmethod
    def from_stored(cls, facts: dict | None, spec: dict | None = None) -> ModelFacts:
        """The facts a checkpoint stores (``/model_facts``), or those an old checkpoint kept in its spec JSON."""
        old = facts if facts is not None else {k.lstrip("_"): v for k, v in (spec or {}).items() if k.startswith("_")}
        shape = old.get("sample_shape")
        return cls(dict(old.get("defaults") or {}), old.get("input_dtype"), list(shape) if shape else None)


def typed(spec: dict, source: str = "spec", **local) -> Spec:
    """The Spec of a validated spec dict (keys starting with ``_`` are not the spec's and are skipped)."""
    return _typed(Spec, {k: v for k, v in spec.items() if not str(k).startswith("_")}, source=source, **local)


def _typed(cls, table: dict, **extra):
    hints = _hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    values = {k: _value(hints[k], v) for k, v in table.items() if k in known}
    return cls(**values, **extra)


def _value(hint, value):
    if value is None:
        return None
    if _is_named(hint):
        return Named.of(value)
    sub = table_class(hint)
    if sub is not None and isinstance(value, dict):
        return value if isinstance(value, sub) else _typed(sub, value)
    item = _dict_of_tables(hint)
    if item is not None and isinstance(value, dict):
        return {
            k: (_typed(item, v) if isinstance(v, dict) and not isinstance(v, item) else v) for k, v in value.items()
        }
    return value


@functools.cache
def _hints(cls) -> dict:
    return typing.get_type_hints(cls, include_extras=True)


def _is_named(hint) -> bool:
    if typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    return hint is Named


def _dict_of_tables(hint) -> type | None:
    """``Table`` in ``dict[str, Table] | None``."""
    for arg in typing.get_args(hint) or (hint,):
        if typing.get_origin(arg) is dict:
            found = table_class(typing.get_args(arg)[1])
            if found is not None:
                return found
    return None


__all__ = ["ModelFacts", "Named", "Spec", "to_plain", "typed"]
