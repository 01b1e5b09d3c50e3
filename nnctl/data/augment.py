"""On-the-fly augmentation of training batches: ``build_augmenter(cfg, kind, sample_shape)(x, rng) -> x'``.

The transforms are the entries of the "augmentation" registry family (``nnctl.augmentations``, where each
one's maths is written); this module picks the ones a ``[data.augment]`` table switches on for a kind of data
and runs them in their registered order:
  images, x float (N, H, W, C): flip, affine (rotation, width_shift, height_shift, zoom, shear, fill_mode,
                                cval), crop_padding, brightness, contrast, noise
  sequences, x float (N, T, F): jitter, scaling, time_warp, step_dropout, noise
  text, x int token ids (N, T): token_deletion, token_swap
  other numeric inputs:         noise

Segmentation (data.kind = "segmentation"): ``JointAugmenter.pair(x, y, rng)`` draws once per sample and applies
flip, the affine map and crop_padding to the images and to their integer masks y (N, H, W) alike, the masks by
nearest neighbour (the class of the source pixel nearest to the point read; fill_mode constant fills class 0);
brightness, contrast and noise change the images only.

Each transform is vectorised over the batch and draws from the numpy Generator passed in: the same seed gives
the same batch, and the input batch is never modified. Data-parallel ranks pass a
``nnctl.rowshare.RowShare``, which draws for the whole global batch and returns the rank's rows, so
N ranks augment as 1 process (brightness's value span and token_swap's count of rounds come from the
rank's rows, though).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from nnctl.augment_ops import (
    affine_images,
    affine_masks,
    as_float,
    bilinear,
    crop_images,
    delete_tokens,
    fill_coordinates,
    flip_images,
    pre_padded,
    resample_series,
    swap_tokens,
    warp_times,
)
from nnctl.augmentations import KEYS, Augmentation, AugmentSection, build, fields
from nnctl.errors import SpecError
from nnctl.fields import check
from nnctl.registry import suggestion

__all__ = [  # the kernels too, where callers have always found them
    "Augmenter",
    "JointAugmenter",
    "affine_images",
    "affine_masks",
    "bilinear",
    "build_augmenter",
    "crop_images",
    "delete_tokens",
    "family_of",
    "fill_coordinates",
    "flip_images",
    "pre_padded",
    "resample_series",
    "swap_tokens",
    "warp_times",
]

WHAT = {
    "images": "images (samples of shape [H, W, C])",
    "sequences": "sequences (samples of shape [T, F])",
    "text": "text token ids",
}


def family_of(kind: str, sample_shape) -> str:
    """Which transforms apply: images for [H, W, C] samples, sequences for time series or [T, F] arrays."""
    if kind == "text":
        return "text"
    if kind == "timeseries" or (kind == "arrays" and len(sample_shape) == 2):
        return "sequences"
    if len(sample_shape) == 3:
        return "images"
    return "other"


class Augmenter:
    """The configured transforms in order; ``augmenter(x, rng)`` returns a new array and never touches ``x``."""

    def __init__(self, steps: list[Augmentation], family: str):
        self.steps, self.family = steps, family

    @property
    def names(self) -> list[str]:
        return [step.name for step in self.steps]

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = x if self.family == "text" else as_float(x)
        for step in self.steps:
            out = step(out, rng)
        return out.copy() if out is x else out


class JointAugmenter(Augmenter):
    """Images and their masks (segmentation): ``pair(x, y, rng)`` applies each geometric step with one draw to
    both (masks nearest neighbour), the photometric ones (brightness, contrast, noise) to the images only.
    Called on images alone it is the ordinary image augmenter, with the same draws."""

    joint = True

    def pair(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(x', y') for images x (N, H, W, C) and integer masks y (N, H, W); neither input is modified."""
        out, masks = as_float(x), y
        for step in self.steps:
            out, moved = step.apply(out, masks, rng)
            masks = masks if moved is None else moved
        return (out.copy() if out is x else out), (masks.copy() if masks is y else masks)


def _checked(cfg: dict, fam: str, kind: str, sample_shape) -> dict:
    """``cfg`` with its values normalised (``fields.check``); SpecError at the first key that is unknown, does
    not apply to the data, or has a bad value."""
    known = fields()
    out = {}
    for key, value in cfg.items():
        where = f"data.augment.{key}"
        if key not in known:
            names = ", ".join(sorted(known))
            raise SpecError(f"{where}: unknown key{suggestion(str(key), known)}; expected one of {names}")
        owners = KEYS[key].applies_to
        if fam not in owners:
            what = "numeric inputs (images, sequences, tables)" if "other" in owners else WHAT[owners[0]]
            raise SpecError(f"{where}: applies to {what}, not {kind} data with samples of shape {list(sample_shape)}")
        out[key], problems = check(known[key], value, where)
        if problems:
            raise SpecError(problems[0])
    return out


def build_augmenter(cfg: Mapping | AugmentSection | None, kind: str, sample_shape: tuple) -> Augmenter:
    """The callable ``(x_batch, rng) -> new batch`` for the spec's ``data.augment`` table (a mapping, or the
    typed section); SpecError for a key that does not apply to the data kind or a value out of range."""
    table = cfg.given() if isinstance(cfg, AugmentSection) else dict(cfg or {})
    fam = family_of(kind, tuple(sample_shape))
    steps = build(_checked(table, fam, kind, sample_shape))
    if kind == "segmentation" and fam == "images":  # masks follow their images through the geometric steps
        return JointAugmenter(steps, fam)
    return Augmenter(steps, fam)
