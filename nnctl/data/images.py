"""Image folders: one subfolder per class, each holding PNG/JPEG files, read into uint8 (N, H, W, C).

Labels are the subfolder names (strings, classes in sorted order); files are read in sorted order so
the arrays are the same on every machine. Size: ``data.image_size = [h, w]`` resizes every image
(bilinear), else every image must have the first image's size. Channels: ``color_mode`` grayscale
(C = 1) or rgb (C = 3); auto is rgb when any image of any split is in a colour mode (RGB, palette,
CMYK...), else grayscale. Pillow is imported only here, so other data kinds do not need it.
"""

from __future__ import annotations

import os
import pathlib
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from nnctl.data import Splits
from nnctl.errors import DataError

# the most pixels of one image, read from its header before decoding (Pillow itself allows about 179 M)
MAX_PIXELS = 40_000_000
DECODE_THREADS = min(8, os.cpu_count() or 1)  # images decoded at once

def _pillow():
    try:
        from PIL import Image  # noqa: PLC0415
    except ImportError:
        raise DataError("image folders need Pillow: Pillow, a core dependency: reinstall nnctl, or pip install Pillow") from None
    return Image


def _image_size(data: dict) -> tuple[int, int] | None:
    size = data.get("image_size")
    if size is None:
        return None
    if (not isinstance(size, (list, tuple)) or len(size) != 2
            or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in size)):
        raise DataError(f"data.image_size: expected [height, width] of two positive integers, found {size!r}")
    return int(size[0]), int(size[1])


def list_folder(root) -> tuple[list[str], list[pathlib.Path], list[str]]:
    """Sorted class names, and every image file with its class; dotfiles and files beside the class folders are skipped."""
    root = pathlib.Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: image folder not found (expected one subfolder per class)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root}: expected one subfolder per class, found none")
    files, labels = [], []
    for c in classes:
        entries = sorted((p for p in (root / c).iterdir() if not p.name.startswith(".")), key=lambda p: p.name)
        for p in entries:
            if p.is_dir():
                raise DataError(f"{p}: expected image files in the class folder {c!r}, found a folder")
            if not p.is_file():
                raise DataError(f"{p}: not a regular file (a pipe or device); expected an image file")
            files.append(p)
            labels.append(c)
        if not entries:
            raise DataError(f"{root / c}: class folder {c!r} holds no images")
    return classes, files, labels


def _headers(Image, files) -> list[tuple[str, tuple[int, int]]]:
    """(mode, (height, width)) of every file; opening reads only the header, so this is cheap."""
    out = []
    for p in files:
        try:
            with warnings.catch_warnings():  # Pillow's own bomb warning: our lower limit below says it in one line
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(p) as im:
                    out.append((im.mode, (im.size[1], im.size[0])))
        except Exception as exc:  # noqa: BLE001 - Pillow raises several kinds for a bad file
            raise DataError(f"{p}: not a readable image ({type(exc).__name__}: {str(exc)[:80]})") from None
        h, w = out[-1][1]
        if h * w > MAX_PIXELS:
            raise DataError(f"{p}: image is {h}x{w} ({h * w} pixels), more than nnctl decodes ({MAX_PIXELS}); "
                            f"resize it first")
    return out


def _is_colour(mode: str, Image) -> bool:
    """Colour modes (RGB, RGBA, palette, CMYK...) versus grayscale ones (1, L, LA, I, I;16, F)."""
    return Image.getmodebase(mode) != "L"


def read_images(files, color_mode: str, size: tuple[int, int] | None) -> np.ndarray:
    """Decode ``files`` into uint8 (N, H, W, C): C = 1 for grayscale, 3 for rgb; resized to ``size`` if given.

    Without ``size`` every image must have the first one's size (the error names the file and both sizes).
    """
    Image = _pillow()
    return _decode(Image, files, _headers(Image, files), color_mode, size)


def _decode(Image, files, heads, color_mode: str, size) -> np.ndarray:
    if size is None:
        size = heads[0][1]
        for p, (_, hw) in zip(files, heads):
            if hw != size:
                raise DataError(f"{p}: image is {hw[0]}x{hw[1]} (height x width) but {files[0]} is "
                                f"{size[0]}x{size[1]}; set data.image_size = [h, w] to resize every image")
    channels = 1 if color_mode == "grayscale" else 3
    pil_mode = "L" if channels == 1 else "RGB"
    x = np.empty((len(files), size[0], size[1], channels), dtype=np.uint8)

    def one(i: int) -> None:
        p = files[i]
        try:
            with Image.open(p) as im:
                im = im.convert(pil_mode)
                if (im.size[1], im.size[0]) != size:
                    im = im.resize((size[1], size[0]), Image.BILINEAR)
                x[i] = np.asarray(im, dtype=np.uint8).reshape(size[0], size[1], channels)
        except DataError:
            raise
        except Exception as exc:  # noqa: BLE001 - truncated or corrupt data shows only when decoding
            raise DataError(f"{p}: not a readable image ({type(exc).__name__}: {exc})") from None

    workers = min(DECODE_THREADS, len(files))
    if workers <= 1:
        for i in range(len(files)):
            one(i)
        return x
    # Pillow releases the GIL while decoding and resizing: threads decode in parallel, each into its own row
    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(one, i) for i in range(len(files))]
        for f in futures:  # in file order: the first bad file is the one named, as in a sequential read
            f.result()
    return x


def _kind_of(path) -> str:
    from nnctl.data import _path_kind  # noqa: PLC0415

    return _path_kind(path, "images")


def load(data: dict, prep) -> Splits:
    """Training, test and validation folders (data.test, data.validation or validation.path) as uint8 images and string labels."""
    Image = _pillow()
    size = _image_size(data)
    folders = {"train": data["train"]}
    val = data.get("validation")
    for role, path in (("test", data.get("test")), ("validation", val.get("path") if isinstance(val, dict) else val)):
        if isinstance(path, str) and path and (pathlib.Path(path).is_dir() or _kind_of(path) == "images"):
            folders[role] = path  # other kinds (an IDX or .npz validation file) are read by load_dataset
    listed = {role: list_folder(path) for role, path in folders.items()}
    train_classes = listed["train"][0]
    for role, (classes, _, _) in listed.items():
        unknown = [c for c in classes if c not in train_classes]
        if unknown:
            raise DataError(f"{pathlib.Path(folders[role]) / unknown[0]}: class {unknown[0]!r} of the {role} folder "
                            f"is not a training class (training classes: {', '.join(train_classes[:10])})")
    heads = {role: _headers(Image, files) for role, (_, files, _) in listed.items()}
    # a fitted preprocessing (evaluate --data) keeps the channels training used
    mode = prep.meta.get("color_mode") or data.get("color_mode", "auto")
    if mode == "auto":
        mode = "rgb" if any(_is_colour(m, Image) for h in heads.values() for m, _ in h) else "grayscale"
    arrays = {role: (_decode(Image, files, heads[role], mode, size), np.array(labels))
              for role, (_, files, labels) in listed.items()}
    shapes = {role: x.shape[1:3] for role, (x, _) in arrays.items()}
    for role, hw in shapes.items():
        if hw != shapes["train"]:  # without image_size each folder keeps its own first size
            raise DataError(f"{folders[role]}: {role} images are {hw[0]}x{hw[1]} but training images are "
                            f"{shapes['train'][0]}x{shapes['train'][1]}; set data.image_size = [h, w]")
    prep.meta.update(color_mode=mode, image_size=list(shapes["train"]))
    s = Splits(*arrays["train"])
    if "test" in arrays:
        s.x_test, s.y_test = arrays["test"]
    if "validation" in arrays:
        s.x_val, s.y_val = arrays["validation"]
    return s
