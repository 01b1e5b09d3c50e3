"""The transforms of ``[data.augment]``: one registry family ("augmentation") whose entries are classes.

A class's constructor keywords are its keys in ``[data.augment]``, typed through ``nnctl.fields``, so the
validator, ``nnctl check``, ``nnctl schema`` and ``build_augmenter`` read one source
(``spec_sections.Augment`` is built from them by ``section``). Adding a transform is one registration:

    @register("name")
    class Name(Augmentation):
        applies_to = ("images",)
        def __init__(self, amount: Annotated[float, Range(0, 1), Doc("images: ...")] | None = None): ...
        def apply(self, x, y, rng): ...

Registration order is the order the transforms run in: flip, affine, crop_padding, brightness, contrast,
jitter, scaling, time_warp, step_dropout, token_deletion, token_swap, noise (each family's own, then noise).
A second registration of a name, or of a key another transform owns, raises ``DuplicateName`` at import.

Each transform draws from the numpy Generator passed in, every per-sample draw with the batch as its first
axis (a ``nnctl.rowshare.RowShare`` on data-parallel ranks), so the same seed gives the same batch. Values are
in units of the preprocessed inputs (after rescale/normalize), so 0 is the padding or fill.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, TypeVar

import numpy as np

from nnctl.augment_ops import (
    affine_images,
    affine_masks,
    crop_images,
    delete_tokens,
    flip_images,
    normal,
    resample_series,
    swap_tokens,
    warp_times,
)
from nnctl.fields import Choices, Doc, Field, NonNegativeInt, Range, params_of
from nnctl.registry import DuplicateName, Registry

FLIPS = ("horizontal", "vertical", "both")
FILL_MODES = ("nearest", "constant", "reflect", "wrap")
Below1 = Range(0, 1, hi_open=True)
Amount = Range(0)


class Augmentation:
    """One registered transform of training batches, built from its ``[data.augment]`` keys.

    ``apply(x, y, rng) -> (x', y')``: ``y`` is None, or for a ``geometric`` transform on images the integer
    masks (N, H, W) that move with them (segmentation); a photometric transform passes ``y`` through.
    Neither input is modified."""

    name: ClassVar[str] = ""
    applies_to: ClassVar[tuple[str, ...]] = ("images",)  # families of data.augment.family_of
    geometric: ClassVar[bool] = False  # moves pixels: masks follow (segmentation)
    settings: ClassVar[tuple[str, ...]] = ()  # keys that shape the transform but do not switch it on
    keras: ClassVar[dict[str, str]] = {}  # ImageDataGenerator key -> this transform's key (keras_names)

    def active(self) -> bool:
        """Whether these values change a batch at all: an amount of 0 (or none) is no transform."""
        return any(getattr(self, key) for key in keys_of(type(self)) if key not in self.settings)

    def apply(self, x: np.ndarray, y: np.ndarray | None, rng) -> tuple[np.ndarray, np.ndarray | None]:
        raise NotImplementedError

    def __call__(self, x: np.ndarray, rng) -> np.ndarray:
        return self.apply(x, None, rng)[0]


def keys_of(cls: type[Augmentation]) -> dict[str, Field]:
    """A transform's ``[data.augment]`` keys: its constructor's parameters, as ``nnctl.fields`` reads them."""
    return params_of(cls)  # type: ignore[arg-type]  # mypy takes a class for unhashable through functools.cache


AUGMENTATIONS: Registry[type[Augmentation]] = Registry("augmentation")
ORDER: list[type[Augmentation]] = []  # registration order, the order the transforms run in
KEYS: dict[str, type[Augmentation]] = {}  # [data.augment] key -> the transform owning it


A = TypeVar("A", bound=type[Augmentation])


def register(name: str) -> Callable[[A], A]:
    """Class decorator: add a transform to the family, its keys to ``KEYS``; DuplicateName for a taken one."""

    def deco(cls: A) -> A:
        for key in keys_of(cls):  # every check before the registry changes
            if key in KEYS:
                raise DuplicateName(f"augmentation key {key!r} of {name!r} is already a key of {KEYS[key].name!r}")
        for old, new in cls.keras.items():
            if new not in keys_of(cls):
                raise ValueError(f"augmentation {name!r}: Keras key {old!r} names {new!r}, which it does not have")
        AUGMENTATIONS.add(name, cls)
        KEYS.update(dict.fromkeys(keys_of(cls), cls))
        cls.name = name
        ORDER.append(cls)
        return cls

    return deco


def fields() -> dict[str, Field]:
    """Every ``[data.augment]`` key and its Field, in the order the transforms run."""
    return {key: f for cls in ORDER for key, f in keys_of(cls).items()}


def keras_renames() -> dict[str, str]:
    """ImageDataGenerator keys that are another spelling of one of ours (``rotation_range`` -> ``rotation``)."""
    return {old: new for cls in ORDER for old, new in cls.keras.items()}


def build(cfg: dict) -> list[Augmentation]:
    """The active transforms of a checked ``[data.augment]`` table, in order (a key set to None is absent)."""
    out = []
    for cls in ORDER:
        given = {k: cfg[k] for k in keys_of(cls) if cfg.get(k) is not None}
        if given:
            transform = cls(**given)
            if transform.active():
                out.append(transform)
    return out


class AugmentSection:
    """Base of the typed ``[data.augment]`` table (``spec_sections.Augment``, made by ``section``)."""

    if TYPE_CHECKING:  # the fields are the registered transforms' keys, known only at run time

        def __getattr__(self, name: str) -> Any: ...

    def given(self) -> dict[str, Any]:
        """The keys whose values differ from their defaults, as a ``[data.augment]`` table."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
            if getattr(self, f.name) != f.default
        }

    def __bool__(self) -> bool:
        return bool(self.given())


def section(bases: tuple[type, ...] = (), **namespace: Any) -> type[AugmentSection]:
    """A frozen dataclass with one field per key of every registered transform (type, default and doc from
    its constructor), so ``fields.fields_of`` checks ``[data.augment]`` against the registry; ``bases`` and
    ``namespace`` (class attributes) are the spec model's own (``spec_sections``)."""
    spec = []
    for cls in ORDER:
        hints = typing.get_type_hints(cls.__init__, include_extras=True)
        for p in list(inspect.signature(cls.__init__).parameters.values())[1:]:
            doc = keys_of(cls)[p.name].doc
            spec.append((p.name, hints[p.name], dataclasses.field(default=p.default, metadata={"doc": doc})))
    made = dataclasses.make_dataclass("Augment", spec, bases=(*bases, AugmentSection), namespace=namespace, frozen=True)
    made.__doc__ = "[data.augment]: the keys of every registered augmentation (nnctl.augmentations)."
    return made


# -- images ----------------------------------------------------------------------------------------------
@register("flip")
class Flip(Augmentation):
    """Mirror each sample with probability 1/2 ("both": each axis independently); masks mirror with it."""

    geometric = True

    def __init__(self, flip: Annotated[str, Choices(FLIPS), Doc("images: mirror")] | None = None):
        self.flip = flip

    def apply(self, x, y, rng):
        h = rng.random(len(x)) < 0.5 if self.flip in ("horizontal", "both") else None
        v = rng.random(len(x)) < 0.5 if self.flip in ("vertical", "both") else None
        return flip_images(x, h, v), (None if y is None else flip_images(y[..., None], h, v)[..., 0])


@register("affine")
class Affine(Augmentation):
    """Rotation r, shifts sw, sh, zoom z and shear a as ONE affine map per sample, sampled bilinearly.

    p_src = c + R(-θ) H(-φ) (p - c - t) / s,  θ ~ U[-r, r] degrees, t ~ (U[-sh, sh] H, U[-sw, sw] W),
    s ~ U[1 - z, 1 + z] (s > 1 enlarges), φ ~ U[-a, a] degrees (H shears rows sideways); points outside the
    image follow fill_mode, as Keras's ImageDataGenerator. Masks take the nearest source pixel's class."""

    geometric = True
    settings = ("fill_mode", "cval")
    keras = {
        "rotation_range": "rotation",
        "width_shift_range": "width_shift",
        "height_shift_range": "height_shift",
        "zoom_range": "zoom",
        "shear_range": "shear",
    }

    def __init__(
        self,
        rotation: Annotated[float, Range(0, 180), Doc("images: degrees")] | None = None,
        width_shift: Annotated[float, Below1, Doc("images: fraction of width")] | None = None,
        height_shift: Annotated[float, Below1, Doc("images: fraction of height")] | None = None,
        zoom: Annotated[float, Below1, Doc("images: scale in [1 - z, 1 + z]")] | None = None,
        shear: Annotated[float, Range(0, 90, hi_open=True), Doc("images: shear angle in degrees")] | None = None,
        fill_mode: Annotated[str, Choices(FILL_MODES), Doc("images: how points outside the image are filled")] = (
            "nearest"
        ),
        cval: Annotated[float, Doc("images: the fill value of fill_mode = constant")] = 0.0,
    ):
        self.rotation, self.width_shift, self.height_shift = rotation, width_shift, height_shift
        self.zoom, self.shear, self.fill_mode, self.cval = zoom, shear, fill_mode, cval

    def apply(self, x, y, rng):
        r, sw, sh, z, shear = (
            float(v or 0) for v in (self.rotation, self.width_shift, self.height_shift, self.zoom, self.shear)
        )
        fill, cval = self.fill_mode or "nearest", float(self.cval or 0.0)
        n, h, w, _ = x.shape
        deg = rng.uniform(-r, r, n)
        shift = rng.uniform(-1, 1, (n, 2)) * np.array([sh * h, sw * w])
        scale = rng.uniform(1 - z, 1 + z, n)
        angles = rng.uniform(-shear, shear, n) if shear else None  # drawn last: older seeds keep their draws
        return (
            affine_images(x, deg, shift, scale, angles, fill, cval),
            None if y is None else affine_masks(y, deg, shift, scale, angles, fill),
        )


@register("crop_padding")
class CropPadding(Augmentation):
    """Pad with p zeros on each side, crop back at a random offset in [0, 2p] on each axis (masks alike)."""

    geometric = True

    def __init__(
        self, crop_padding: Annotated[NonNegativeInt, Doc("images: pad and crop back at a random offset")] | None = None
    ):
        self.crop_padding = crop_padding

    def apply(self, x, y, rng):
        pad = int(self.crop_padding or 0)
        offsets = rng.integers(0, 2 * pad + 1, (len(x), 2))
        return crop_images(x, pad, offsets), (None if y is None else crop_images(y[..., None], pad, offsets)[..., 0])


@register("brightness")
class Brightness(Augmentation):
    """x + δ (max(x) - min(x)) over the batch, δ ~ U[-b, b] per sample."""

    def __init__(
        self,
        brightness: Annotated[float, Amount, Doc("images: additive shift, fraction of the batch's range")]
        | None = None,
    ):
        self.brightness = brightness

    def apply(self, x, y, rng):
        b = float(self.brightness or 0)
        span = float(x.max() - x.min()) if x.size else 0.0
        delta = rng.uniform(-b, b, (len(x), 1, 1, 1)) * (span or 1.0)
        return x + delta.astype(x.dtype), y


@register("contrast")
class Contrast(Augmentation):
    """m + f (x - m), m the sample's mean, f ~ U[1 - c, 1 + c] per sample."""

    def __init__(
        self, contrast: Annotated[float, Range(0, 1), Doc("images: contrast factor in [1 - c, 1 + c]")] | None = None
    ):
        self.contrast = contrast

    def apply(self, x, y, rng):
        c = float(self.contrast or 0)
        mean = x.mean(axis=(1, 2, 3), keepdims=True)
        return (x - mean) * rng.uniform(1 - c, 1 + c, (len(x), 1, 1, 1)).astype(x.dtype) + mean, y


# -- sequences -------------------------------------------------------------------------------------------
@register("jitter")
class Jitter(Augmentation):
    """x + N(0, σ²) on sequences (N, T, F)."""

    applies_to = ("sequences",)

    def __init__(self, jitter: Annotated[float, Amount, Doc("sequences: Gaussian noise sigma")] | None = None):
        self.jitter = jitter

    def apply(self, x, y, rng):
        return x + normal(rng, x.shape, float(self.jitter or 0), x.dtype), y


@register("scaling")
class Scaling(Augmentation):
    """a x, a ~ N(1, s²) per sample."""

    applies_to = ("sequences",)

    def __init__(self, scaling: Annotated[float, Amount, Doc("sequences: scale factor sigma")] | None = None):
        self.scaling = scaling

    def apply(self, x, y, rng):
        return x * (1 + normal(rng, (len(x), 1, 1), float(self.scaling or 0), x.dtype)), y


@register("time_warp")
class TimeWarp(Augmentation):
    """x'(t) = x(τ(t)) by linear interpolation; τ the running sum of a speed piecewise linear between 4 knots
    drawn from U[1 - w, 1 + w], rescaled so τ(0) = 0 and τ(T-1) = T-1."""

    applies_to = ("sequences",)

    def __init__(self, time_warp: Annotated[float, Below1, Doc("sequences: speed variation")] | None = None):
        self.time_warp = time_warp

    def apply(self, x, y, rng):
        if x.shape[1] < 2:
            return x.copy(), y
        w = float(self.time_warp or 0)
        return resample_series(x, warp_times(rng.uniform(1 - w, 1 + w, (len(x), 4)), x.shape[1])), y


@register("step_dropout")
class StepDropout(Augmentation):
    """Each step (all its features) set to 0 with probability p."""

    applies_to = ("sequences",)

    def __init__(self, step_dropout: Annotated[float, Below1, Doc("sequences: step drop probability")] | None = None):
        self.step_dropout = step_dropout

    def apply(self, x, y, rng):
        p = float(self.step_dropout or 0)
        return x * (rng.random((len(x), x.shape[1], 1)) >= p).astype(x.dtype), y


# -- text (int token ids (N, T), 0 = padding) ------------------------------------------------------------
@register("token_deletion")
class TokenDeletion(Augmentation):
    """Each token dropped with probability p; the rest keep their order and the padding side."""

    applies_to = ("text",)

    def __init__(self, token_deletion: Annotated[float, Below1, Doc("text: token drop probability")] | None = None):
        self.token_deletion = token_deletion

    def apply(self, x, y, rng):
        return delete_tokens(x, rng.random(x.shape) < float(self.token_deletion or 0)), y


@register("token_swap")
class TokenSwap(Augmentation):
    """round(p L) swaps of random adjacent token pairs, L the sample's token count."""

    applies_to = ("text",)

    def __init__(self, token_swap: Annotated[float, Range(0, 1), Doc("text: adjacent swaps per token")] | None = None):
        self.token_swap = token_swap

    def apply(self, x, y, rng):
        return swap_tokens(x, float(self.token_swap or 0), rng), y


# -- any numeric input: last, after each family's own transforms ---------------------------------------
@register("noise")
class Noise(Augmentation):
    """x + N(0, σ²) on images, sequences and tables (never on masks or token ids)."""

    applies_to = ("images", "sequences", "other")

    def __init__(self, noise: Annotated[float, Amount, Doc("numeric inputs: Gaussian noise sigma")] | None = None):
        self.noise = noise

    def apply(self, x, y, rng):
        return x + normal(rng, x.shape, float(self.noise or 0), x.dtype), y
