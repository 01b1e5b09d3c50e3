"""The data kinds a spec can name (``data.kind``): one registry family whose entries are the modules that
load each kind, imported only when that kind is read.

Each module has ``load(data: DataSection, prep, seed) -> Splits``. ``auto`` is not a loader:
``data.resolve_kind`` turns it into a kind from the training path (a folder, an IDX name, ``.csv``, ``.npz``/``.npy``/``.h5``).
"""

from __future__ import annotations

import importlib

from nnctl.registry import Registry

KINDS: Registry[str | None] = Registry("data kind")
KINDS.add("auto", None)
KINDS.add("tabular", "nnctl.data.tabular", "csv")
KINDS.add("arrays", "nnctl.data.arrays", "npz", "npy", "hdf5", "h5")
KINDS.add("idx", "nnctl.data.idx", "ubyte")
KINDS.add("images", "nnctl.data.images", "image_folder", "image_dataset_from_directory")
KINDS.add("timeseries", "nnctl.data.timeseries", "timeseries_dataset_from_array")
KINDS.add("text", "nnctl.data.text", "text_dataset_from_directory")
KINDS.add("segmentation", "nnctl.data.masks", "masks")


def loader(kind: str):
    """The ``load`` function of a resolved kind (not ``auto``)."""
    module = KINDS.get(kind)
    if module is None:
        raise ValueError("data kind 'auto' must be resolved from the training path first (data.resolve_kind)")
    return importlib.import_module(module).load
