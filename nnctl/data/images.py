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
from typing import TYPE_CHECKING

import numpy as np

from nnctl.data import Splits, _path_kind
from nnctl.data.streaming import Rows
from nnctl.errors import DataError

if TYPE_CHECKING:
    from nnctl.spec_sections import DataSection

# the most pixels of one image, read from its header before decoding (Pillow itself allows about 179 M)
MAX_PIXELS = 40_000_000
DECODE_THREADS = min(8, os.cpu_count() or 1)  # images decoded at once


def _pillow():
    try:
        from PIL import Image
    except ImportError:
        raise DataError(
            "image folders need Pillow: Pillow, a core dependency: reinstall nnctl, or pip install Pillow"
        ) from None
    return Image


def _image_size(data: DataSection) -> tuple[int, int] | None:
    size = data.image_size
    if size is None:
        return None
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in size)
    ):
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
            raise DataError(
                f"{p}: image is {h}x{w} ({h * w} pixels), more than nnctl decodes ({MAX_PIXELS}); resize it first"
            )
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


def _same_size(files, heads, size) -> None:
    """Refuse an image whose size differs from ``size`` (without data.image_size every image keeps its own)."""
    for p, (_, hw) in zip(files, heads):
        if hw != size:
            raise DataError(
                f"{p}: image is {hw[0]}x{hw[1]} (height x width) but {files[0]} is "
                f"{size[0]}x{size[1]}; set data.image_size = [h, w] to resize every image"
            )


def _decode(Image, files, heads, color_mode: str, size) -> np.ndarray:
    if size is None:
        size = heads[0][1]
        _same_size(files, heads, size)
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


class _Files:
    """The (N, H, W, C) uint8 array a folder decodes to, as a shape and dtype only (``Rows``' source)."""

    chunks = None

    def __init__(self, Image, files, color_mode: str, size: tuple[int, int]):
        self.Image, self.files, self.color_mode, self.size = Image, list(files), color_mode, size
        channels = 1 if color_mode == "grayscale" else 3
        self.shape = (len(self.files), size[0], size[1], channels)
        self.dtype = np.dtype(np.uint8)

    def decode(self, rows: np.ndarray) -> np.ndarray:
        return _decode(self.Image, [self.files[int(i)] for i in rows], None, self.color_mode, self.size)


class ImageRows(Rows):
    """An image folder decoded per batch: ``Rows`` whose reads decode the files they name (in a thread pool)
    while a background thread already decodes the batch expected next.

    The next batch is the following slice of the epoch's order (``epoch_order``, the in-memory
    permutation, so training gives the weights of the same images in memory), or the next consecutive
    rows after a consecutive read (evaluation, prediction, statistics). A read that was not foreseen
    (a mid-epoch resume's first batch, an MPI rank's share) is decoded on the spot."""

    def __init__(self, source: _Files, index=None, transform=None, dtype=None):
        super().__init__(source, index, transform, dtype, block_rows=1)
        self._plan: np.ndarray | None = None  # this epoch's order of logical rows
        self._cursor = 0
        self._pending: tuple | None = None  # (rows, raw, future) decoding in the background
        self._pool = None

    def _view(self, index, transform, dtype) -> ImageRows:
        return ImageRows(self.source, index, transform, dtype)

    def epoch_order(self, rng: np.random.Generator) -> np.ndarray:
        self._plan, self._cursor = super().epoch_order(rng), 0
        return self._plan

    def _read(self, idx: np.ndarray, raw: bool = False) -> np.ndarray:
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"row {int(idx.max())} is out of range for {len(self)} rows")
        pending, self._pending = self._pending, None
        if pending is not None and pending[1] == raw and np.array_equal(pending[0], idx):
            block = pending[2].result()  # a corrupt file raises here, at the batch that needs it
        else:
            block = self._decode(idx, raw)
        following = self._following(idx)
        if following is not None and len(following):
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="nnctl-prefetch")
            self._pending = (following, raw, self._pool.submit(self._decode, following, raw))
        return block

    def _decode(self, idx: np.ndarray, raw: bool) -> np.ndarray:
        phys = idx if self.index is None else self.index[idx]
        block = self.source.decode(phys)
        if raw:
            return block
        if self.transform is not None:
            block = self.transform(block)
        return np.asarray(block, dtype=self.dtype)

    def _following(self, idx: np.ndarray) -> np.ndarray | None:
        """The rows expected to be read next: the next slice of the epoch's order, or the next run of rows."""
        k = len(idx)
        plan = self._plan
        if plan is not None and k:
            c = self._cursor
            if not np.array_equal(plan[c : c + k], idx):  # out of step (a resumed epoch): find the batch
                hits = np.flatnonzero(plan == idx[0])
                c = int(hits[0]) if len(hits) else -1
            if c >= 0 and np.array_equal(plan[c : c + k], idx):
                self._cursor = c + k
                return plan[c + k : c + 2 * k]
        if k > 1 and idx[-1] - idx[0] == k - 1 and np.all(np.diff(idx) == 1):
            return np.arange(idx[-1] + 1, min(idx[-1] + 1 + k, len(self)), dtype=np.int64)
        return None


def _streams(data: DataSection, n_pixels_bytes: int) -> bool:
    """Whether the folder is decoded per batch: ``stream = "batches"``, or ``auto`` above ``stream_above_mb``."""
    mode = data.stream
    if mode == "batches":
        return True
    return mode == "auto" and n_pixels_bytes > int(data.stream_above_mb) << 20


def _kind_of(path) -> str:
    return _path_kind(path, "images")


def load(data: DataSection, prep, seed: int = 0) -> Splits:
    """Training, test and validation folders (data.test, data.validation or validation.path) as uint8 images and string labels."""
    Image = _pillow()
    size = _image_size(data)
    folders = {"train": data.train}
    val = data.validation
    for role, path in (("test", data.test), ("validation", val if isinstance(val, str) or val is None else val.path)):
        if isinstance(path, str) and path and (pathlib.Path(path).is_dir() or _kind_of(path) == "images"):
            folders[role] = path  # other kinds (an IDX or .npz validation file) are read by load_dataset
    listed = {role: list_folder(path) for role, path in folders.items()}
    train_classes = listed["train"][0]
    for role, (classes, _, _) in listed.items():
        unknown = [c for c in classes if c not in train_classes]
        if unknown:
            raise DataError(
                f"{pathlib.Path(folders[role]) / unknown[0]}: class {unknown[0]!r} of the {role} folder "
                f"is not a training class (training classes: {', '.join(train_classes[:10])})"
            )
    heads = {role: _headers(Image, files) for role, (_, files, _) in listed.items()}
    # a fitted preprocessing (evaluate --data) keeps the channels training used
    mode = prep.meta.get("color_mode") or data.color_mode
    if mode == "auto":
        mode = "rgb" if any(_is_colour(m, Image) for h in heads.values() for m, _ in h) else "grayscale"
    channels = 1 if mode == "grayscale" else 3
    hw = size or heads["train"][0][1]
    total = sum(len(files) for _, files, _ in listed.values()) * hw[0] * hw[1] * channels
    if _streams(data, total):  # decoded per batch, the next one in the background
        for role, (_, files, _) in listed.items():
            if size is None:
                _same_size(files, heads[role], hw)
        arrays = {
            role: (ImageRows(_Files(Image, files, mode, hw)), np.array(labels))
            for role, (_, files, labels) in listed.items()
        }
    else:
        arrays = {
            role: (_decode(Image, files, heads[role], mode, size), np.array(labels))
            for role, (_, files, labels) in listed.items()
        }
    shapes = {role: x.shape[1:3] for role, (x, _) in arrays.items()}
    for role, hw in shapes.items():
        if hw != shapes["train"]:  # without image_size each folder keeps its own first size
            raise DataError(
                f"{folders[role]}: {role} images are {hw[0]}x{hw[1]} but training images are "
                f"{shapes['train'][0]}x{shapes['train'][1]}; set data.image_size = [h, w]"
            )
    prep.meta.update(color_mode=mode, image_size=list(shapes["train"]))
    s = Splits(*arrays["train"])
    if "test" in arrays:
        s.x_test, s.y_test = arrays["test"]
    if "validation" in arrays:
        s.x_val, s.y_val = arrays["validation"]
    return s
