"""Synthetic single-object localisation images for specs/localisation.toml: one shape per image, its class and box.

Each 32x32 grayscale image holds one filled square, disc or triangle (class 0, 1, 2) of side 8 to 18
pixels at a random place, with an intensity from 0.5 to 1 on a black background. Its box is
(x_min, y_min, x_max, y_max) in [0, 1] (pixel edges / 32). Writes examples/data/shapes-train.npz and
shapes-test.npz with arrays images (N, 32, 32, 1) float32, labels (N,) int64 and boxes (N, 4) float32.
Deterministic: the same files for the same seed.

    python examples/make_localisation.py [--train 2000] [--test 400] [--seed 0]
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np

SIZE = 32
CLASSES = ("square", "disc", "triangle")


def draw(kind: int, x0: int, y0: int, s: int) -> np.ndarray:
    """A (SIZE, SIZE) mask of one shape whose bounding box is [x0, x0 + s) x [y0, y0 + s)."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] + 0.5  # pixel centres
    u, v = (xx - x0) / s, (yy - y0) / s  # 0..1 across the box
    inside = (u >= 0) & (u <= 1) & (v >= 0) & (v <= 1)
    if kind == 0:
        return inside
    if kind == 1:
        return (u - 0.5) ** 2 + (v - 0.5) ** 2 <= 0.25
    return inside & (np.abs(u - 0.5) <= v / 2)  # apex at the top, base along the bottom edge


def make(n: int, rng: np.random.Generator):
    images = np.zeros((n, SIZE, SIZE, 1), np.float32)
    labels = rng.integers(0, len(CLASSES), n)
    boxes = np.zeros((n, 4), np.float32)
    for i in range(n):
        s = int(rng.integers(8, 19))
        x0, y0 = (int(v) for v in rng.integers(0, SIZE - s + 1, 2))
        mask = draw(int(labels[i]), x0, y0, s)
        images[i, ..., 0] = np.where(mask, np.float32(round(rng.uniform(0.5, 1.0), 2)), 0.0)
        boxes[i] = np.array([x0, y0, x0 + s, y0 + s], np.float32) / SIZE
    return images, labels.astype(np.int64), boxes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--test", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(pathlib.Path(__file__).parent / "data"))
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", a.train), ("test", a.test)):
        images, labels, boxes = make(n, rng)
        np.savez_compressed(out / f"shapes-{name}.npz", images=images, labels=labels, boxes=boxes)
    print(f"wrote {a.train} training and {a.test} test images to {out}")


if __name__ == "__main__":
    main()
