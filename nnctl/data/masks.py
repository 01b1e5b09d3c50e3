"""Segmentation data (``data.kind = "segmentation"``): images paired with integer masks of the same size.

A split is either a folder holding ``images/`` and ``masks/`` (a mask has its image's file name, or its stem
with ``.png``; every pixel of a mask is the class id of that pixel of the image), or an .npz/HDF5 file with
inputs x (N, H, W[, C]) under ``data.x`` and masks y (N, H, W[, 1]) under ``data.y``. Images decode as the
image-folder kind decodes them (``color_mode``, ``image_size``: bilinear for images, nearest for masks); masks
are read without conversion from single-channel PNGs (L, P: the palette index is the class, 1, I;16, I).
Masks are checked as they are read, each error naming its file: a missing mask, a mask whose size differs from
its image's, a value that is not a class id. The class range is the model's output channels (plus a loss's
``ignore_class``), checked when the model is built (``check_classes``) and stored in the checkpoint, so
``evaluate --data`` checks new masks against it as they are read.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from nnctl.data import images as imgs
from nnctl.data import typed
from nnctl.data.images import _pillow
from nnctl.data.inputs import IMAGE_SUFFIXES
from nnctl.data.readers import _exists, read_arrays
from nnctl.data.splits import Splits, check_finite
from nnctl.errors import DataError
from nnctl.fs import atomic_write

if TYPE_CHECKING:
    from nnctl.spec_model import Spec
    from nnctl.spec_sections import DataSection

MASK_MODES = ("L", "P", "1", "I", "I;16", "I;16B", "I;16L")


def _allowed(meta: dict) -> tuple[int, int | None] | None:
    """(classes, ignored id) stored by ``check_classes`` in a trained model's preprocessing, else None."""
    if "mask_classes" not in meta:
        return None
    return int(meta["mask_classes"]), meta.get("ignore_class")


def _check_values(values: np.ndarray, where: str, allowed) -> None:
    """Refuse a mask value that is not a class id (0 .. K - 1, or the loss's ignore_class)."""
    if allowed is None:
        return
    k, ignore = allowed
    ok = (values >= 0) & (values < k)
    if ignore is not None:
        ok |= values == ignore
    bad = values[~ok]
    if len(bad):
        span = f"0-{k - 1}" + (f" or {ignore} (ignored)" if ignore is not None else "")
        raise DataError(
            f"{where}: mask value {int(bad[0])} is not a class id; expected {span} (the model has {k} output channels)"
        )


def _record(sources: dict, values: np.ndarray, where: str) -> None:
    for v in values.tolist():
        sources.setdefault(int(v), where)


# -- folders ---------------------------------------------------------------------------------------
def _pairs(root: pathlib.Path) -> tuple[list[pathlib.Path], list[pathlib.Path]]:
    """Image files of ``root/images`` and the mask of each in ``root/masks``, in sorted name order."""
    images, masks = root / "images", root / "masks"
    for d in (images, masks):
        if not d.is_dir():
            raise DataError(
                f"{d}: folder not found; a segmentation folder holds images/ and masks/ (the same file names)"
            )

    files = sorted(
        (
            p
            for p in images.iterdir()
            if not p.name.startswith(".") and p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        ),
        key=lambda p: p.name,
    )
    if not files:
        raise DataError(f"{images}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    found = []
    for p in files:
        m = masks / p.name
        if not m.is_file():
            m = masks / (p.stem + ".png")
        if not m.is_file():
            raise DataError(f"{masks / p.name}: missing mask for the image {p}")
        found.append(m)
    paired = {m.name for m in found}
    extra = sorted(
        p.name for p in masks.iterdir() if p.is_file() and not p.name.startswith(".") and p.name not in paired
    )
    if extra:
        raise DataError(f"{masks / extra[0]}: a mask without an image (expected {images / extra[0]})")
    return files, found


def read_mask(path: pathlib.Path, size: tuple[int, int], resize_to: tuple[int, int] | None = None) -> np.ndarray:
    """One mask file as int64 (H, W) class ids; it must be ``size`` (its image's own size), and is then
    resized to ``resize_to`` by nearest neighbour (never blending two class ids)."""
    Image = _pillow()
    try:
        with Image.open(path) as im:
            if im.mode not in MASK_MODES:
                raise DataError(
                    f"{path}: mask is a {im.mode} image; expected one channel of class ids (a grayscale or palette PNG)"
                )
            hw = (im.size[1], im.size[0])
            if hw != tuple(size):
                raise DataError(
                    f"{path}: mask is {hw[0]}x{hw[1]} (height x width) but its image is {size[0]}x{size[1]}"
                )
            if resize_to is not None and tuple(resize_to) != hw:
                im = im.resize((resize_to[1], resize_to[0]), Image.NEAREST)
            return np.asarray(im).astype(np.int64)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow raises several kinds for a bad file
        raise DataError(f"{path}: not a readable mask image ({type(exc).__name__}: {str(exc)[:80]})") from None


def _folder(root, data: DataSection, mode: str | None, sources: dict, allowed):
    """(uint8 images (N, H, W, C), int64 masks (N, H, W), colour mode) of one segmentation folder."""
    root = pathlib.Path(root)
    files, mask_files = _pairs(root)
    Image = imgs._pillow()
    heads = imgs._headers(Image, files)
    if mode is None or mode == "auto":
        mode = "rgb" if any(imgs._is_colour(m, Image) for m, _ in heads) else "grayscale"
    size = imgs._image_size(data)
    x = imgs._decode(Image, files, heads, mode, size)
    y = np.empty(x.shape[:3], dtype=np.int64)
    for i, m in enumerate(mask_files):
        y[i] = read_mask(m, heads[i][1], x.shape[1:3])  # the image's own size, then the decoded size
        values = np.unique(y[i])
        _check_values(values, str(m), allowed)
        _record(sources, values, str(m))
    return x, y, mode


# -- arrays ------------------------------------------------------------------------------------------
def _arrays(path, data: DataSection, sources: dict, allowed):
    """(inputs, int64 masks (N, H, W)) of an .npz/HDF5 file; masks must be whole numbers."""
    p = _exists(path)
    x, y = read_arrays(p, (data.x, data.y))
    if y is None:
        raise DataError(f"{p}: expected an array of masks under {data.y!r}")
    if len(x) != len(y):
        raise DataError(f"{p}: {data.x!r} has {len(x)} samples but {data.y!r} has {len(y)}")
    check_finite(x, str(p), data.x)
    check_finite(y, str(p), data.y)
    if y.ndim == 4 and y.shape[-1] == 1:
        y = y[..., 0]
    hw = tuple(x.shape[1:3])
    if y.ndim != 3 or x.ndim not in (3, 4) or tuple(y.shape[1:]) != hw:
        raise DataError(
            f"{p}: masks {data.y!r} have shape {list(y.shape[1:])} per sample but the "
            f"images {data.x!r} are {list(x.shape[1:])}; expected masks of [height, width]"
        )
    if y.dtype.kind not in "biu":
        if y.dtype.kind != "f" or not np.array_equal(y, np.round(y)):
            raise DataError(f"{p}: masks {data.y!r} hold non-integer values; expected class ids")
    y = y.astype(np.int64)
    values, first = np.unique(y.reshape(len(y), -1), return_index=True)
    for v, i in zip(values.tolist(), (first // max(y[0].size, 1)).tolist()):
        where = f"{p} (sample {i})"
        _check_values(np.array([v]), where, allowed)
        sources.setdefault(int(v), where)
    return (x[..., None] if x.ndim == 3 else x), y


def _is_arrays(path) -> bool:
    return str(path).lower().endswith((".npz", ".h5", ".hdf5"))


def load(data: DataSection, prep, seed: int = 0) -> Splits:
    """Training, test and validation splits (folders or arrays files) as images and int64 masks."""
    if prep.task != "sparse":
        raise DataError(
            f"{data.train}: train.loss: masks hold one class id per pixel; expected a loss on "
            f"class ids (sparse_categorical_crossentropy or dice), found a {prep.task} loss"
        )
    allowed = _allowed(prep.meta)
    sources: dict[int, str] = {}  # each mask value and the first file holding it, for check_classes
    mode = prep.meta.get("color_mode") or data.color_mode
    val = data.validation
    roles = {
        "train": data.train,
        "test": data.test,
        "validation": val if isinstance(val, str) or val is None else val.path,
    }
    out: dict = {}
    for role, path in roles.items():
        if not isinstance(path, str) or not path:
            continue
        if _is_arrays(path):
            out[role] = _arrays(path, data, sources, allowed)
        else:
            x, y, mode = _folder(path, data, mode, sources, allowed)
            out[role] = (x, y)
    shapes = {role: x.shape[1:] for role, (x, _) in out.items()}
    for role, shape in shapes.items():
        if shape != shapes["train"]:
            raise DataError(
                f"{roles[role]}: {role} images are {list(shape)} but training images are "
                f"{list(shapes['train'])}; set data.image_size = [h, w] (folders)"
            )
    if mode in ("grayscale", "rgb"):
        prep.meta["color_mode"] = mode
    prep.meta["image_size"] = list(shapes["train"][:2])
    prep.mask_sources = sources  # type: ignore[attr-defined]  # read by check_classes; not stored
    s = Splits(*out["train"])
    if "test" in out:
        s.x_test, s.y_test = out["test"]
    if "validation" in out:
        s.x_val, s.y_val = out["validation"]
    return s


def check_classes(spec: Spec | Mapping, units: int, prep) -> None:
    """Every mask value read for training is a class id of a model with ``units`` output channels (or the
    loss's ignore_class); the range is stored in the preprocessing for later reads (evaluate --data)."""
    ignore = typed(spec).train.loss.params.get("ignore_class")
    allowed = (int(units), None if ignore is None else int(ignore))
    for value, where in sorted(getattr(prep, "mask_sources", {}).items()):
        _check_values(np.array([value]), where, allowed)
    prep.meta["mask_classes"], prep.meta["ignore_class"] = allowed


# -- predicted masks ---------------------------------------------------------------------------------
def is_mask_folder(output: str) -> bool:
    """Whether ``predict --output`` names a folder of mask PNGs: it ends with a slash, is a folder, or has no
    file extension."""
    p = pathlib.Path(output)
    return output.endswith(("/", "\\")) or p.is_dir() or not p.suffix


def mask_names(files: list[str] | None, source: str, n: int) -> list[str]:
    """The file name of each predicted mask: the input's path below the input folder (a single file: its
    name), with the extension .png; inputs that are not files (arrays, stdin) give 0000.png, 0001.png..."""
    if files is None:
        return [f"{i:04d}.png" for i in range(n)]
    root = pathlib.Path(source)
    out = []
    for f in files:
        p = pathlib.Path(f)
        rel = p.relative_to(root) if root.is_dir() and p.is_relative_to(root) else pathlib.Path(p.name)
        out.append(str(rel.with_suffix(".png")))
    return out


def write_masks(folder, masks: np.ndarray, names: list[str]) -> list[str]:
    """Write each (H, W) class-id mask as a PNG (8-bit grayscale, 16-bit beyond 256 classes) under ``folder``
    at its name; each file is written atomically. Returns the paths written."""
    Image = _pillow()
    root = pathlib.Path(folder)
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise DataError(
            f"{folder}: expected one mask of [height, width] per input, found predictions of shape "
            f"{list(masks.shape[1:])}"
        )
    big = int(masks.max(initial=0)) > 255
    written = []
    for m, name in zip(masks, names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        im = Image.fromarray(m.astype(np.uint16 if big else np.uint8))
        atomic_write(path, lambda tmp, im=im: im.save(tmp, format="PNG"))
        written.append(str(path))
    return written
