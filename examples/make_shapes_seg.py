"""Synthetic segmentation data: grayscale images of several shapes, each with its mask of class ids.

Classes: 0 background, 1 circle, 2 square, 3 triangle. Every image holds 2-4 shapes of random size, position
and grey level (so a pixel's brightness does not tell its class: the shape does), later shapes hiding earlier
ones, on a smooth random background with a little noise. Writes, for each split, ``images/NNNN.png`` (8-bit
grayscale) and ``masks/NNNN.png`` (8-bit, pixel value = class id), or one .npz per split with --npz
(x uint8 (N, H, W, 1), y uint8 (N, H, W)).

    python examples/make_shapes_seg.py                      # examples/data/shapes_seg/{train,test}
    python examples/make_shapes_seg.py --train 2000 --size 64 --out /tmp/shapes
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np

CLASSES = ("background", "circle", "square", "triangle")


def shape_mask(kind: int, size: int, cy: float, cx: float, r: float, flip: bool) -> np.ndarray:
    """Boolean (size, size) pixels of one shape of half-size ``r`` centred at (cy, cx)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    dy, dx = yy - cy, xx - cx
    if kind == 1:
        return dy * dy + dx * dx <= r * r
    if kind == 2:
        return (np.abs(dy) <= r * 0.85) & (np.abs(dx) <= r * 0.85)  # the same area scale as the circle
    if flip:  # a triangle pointing down
        dy = -dy
    # apex at (-r, 0), base at +r*0.7: inside when below both sides and above the base
    return (dy <= r * 0.7) & (np.abs(dx) <= (dy + r) * 0.65)


def one_image(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 image (size, size), uint8 mask (size, size)) with 2-4 shapes."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    a, b, c = rng.uniform(-40, 40, 3)
    img = 110 + a * yy + b * xx + c * yy * xx  # a smooth background ramp
    mask = np.zeros((size, size), np.uint8)
    for _ in range(rng.integers(2, 5)):
        kind = int(rng.integers(1, 4))
        r = rng.uniform(0.12, 0.22) * size
        cy, cx = rng.uniform(r, size - r, 2)
        inside = shape_mask(kind, size, cy, cx, r, bool(rng.integers(0, 2)))
        level = rng.choice([rng.uniform(0, 60), rng.uniform(170, 255)])  # darker or lighter than the background
        img[inside] = level
        mask[inside] = kind
    img = img + rng.normal(0, 6, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), mask


def make(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pairs = [one_image(rng, size) for _ in range(n)]
    return np.stack([p[0] for p in pairs])[..., None], np.stack([p[1] for p in pairs])


def write_folder(root: pathlib.Path, x: np.ndarray, y: np.ndarray) -> None:
    from PIL import Image  # noqa: PLC0415

    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(len(x)):
        Image.fromarray(x[i, ..., 0], mode="L").save(root / "images" / f"{i:04d}.png", optimize=True)
        Image.fromarray(y[i], mode="L").save(root / "masks" / f"{i:04d}.png", optimize=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(pathlib.Path(__file__).parent / "data" / "shapes_seg"))
    ap.add_argument("--train", type=int, default=800, help="training images")
    ap.add_argument("--test", type=int, default=200, help="test images")
    ap.add_argument("--size", type=int, default=32, help="height and width in pixels")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--npz", action="store_true", help="write train.npz and test.npz instead of folders")
    args = ap.parse_args()
    out = pathlib.Path(args.out)
    for split, n, seed in (("train", args.train, args.seed), ("test", args.test, args.seed + 1)):
        x, y = make(n, args.size, seed)
        if args.npz:
            out.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(out / f"{split}.npz", x=x, y=y)
        else:
            write_folder(out / split, x, y)
        share = np.bincount(y.reshape(-1), minlength=len(CLASSES)) / y.size
        print(
            f"{split}: {n} images {args.size}x{args.size}, pixels per class "
            + ", ".join(f"{c} {s:.1%}" for c, s in zip(CLASSES, share))
        )


if __name__ == "__main__":
    main()
