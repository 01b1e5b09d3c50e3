"""Write examples/data/cifar_sample/: a SYNTHETIC CIFAR-like folder of 32x32 RGB PNGs in 10 classes.

Not real photographs: each image is a shape or texture drawn with Pillow at 4x size and downsampled
(anti-aliased), in a random colour on a random colour gradient, plus Gaussian pixel noise (std 6).
Classes (one subfolder each): circle, ring, square, triangle, cross, star (random position, size
6-12 px radius and rotation), horizontal_stripes, vertical_stripes, checkerboard, dots (a random
patch of 14-28 px with a random period). The foreground differs from the background by at least 90
in RGB distance, so colour alone never tells a class: the network has to learn shapes.
Layout: train/<class>/<class>_NNN.png (60 per class), test/<class>/<class>_NNN.png (15 per class).
Usage: python examples/make_cifar_sample.py   (seeded: the same pixels on every run; needs Pillow)
"""

import pathlib
import shutil

import numpy as np
from PIL import Image, ImageDraw

SIZE, SUPER, NOISE = 32, 4, 6.0
N_TRAIN, N_TEST = 60, 15
SHAPES = ("circle", "ring", "square", "triangle", "cross", "star")
TEXTURES = ("horizontal_stripes", "vertical_stripes", "checkerboard", "dots")
CLASSES = SHAPES + TEXTURES


def _colours(rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two background corner colours and a foreground colour far enough from both."""
    bg0 = rng.integers(0, 256, 3)
    bg1 = np.clip(bg0 + rng.integers(-50, 51, 3), 0, 255)
    while True:
        fg = rng.integers(0, 256, 3)
        if min(np.linalg.norm(fg - bg0), np.linalg.norm(fg - bg1)) >= 90:
            return bg0, bg1, fg


def _polygon(cx, cy, radii, angle) -> list[tuple[float, float]]:
    """Vertices at equal angular steps with the given radii, turned by ``angle`` radians."""
    k = len(radii)
    a = angle + 2 * np.pi * np.arange(k) / k
    return [(cx + r * np.cos(t), cy + r * np.sin(t)) for r, t in zip(radii, a)]


def _draw_shape(draw, name, rng, fill) -> None:
    s = SUPER
    r = rng.uniform(6, 12) * s
    cx, cy = (rng.uniform(r, SIZE * s - r) for _ in range(2))
    angle = rng.uniform(0, 2 * np.pi)
    if name == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif name == "ring":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=fill, width=int(r * rng.uniform(0.25, 0.4)))
    elif name == "square":
        draw.polygon(_polygon(cx, cy, [r] * 4, angle), fill=fill)
    elif name == "triangle":
        draw.polygon(_polygon(cx, cy, [r] * 3, angle), fill=fill)
    elif name == "cross":  # a plus sign: two bars through the centre
        w = r * rng.uniform(0.25, 0.4)
        for a in (angle, angle + np.pi / 2):
            dx, dy, nx, ny = r * np.cos(a), r * np.sin(a), w * -np.sin(a), w * np.cos(a)
            draw.polygon(
                [
                    (cx - dx + nx, cy - dy + ny),
                    (cx + dx + nx, cy + dy + ny),
                    (cx + dx - nx, cy + dy - ny),
                    (cx - dx - nx, cy - dy - ny),
                ],
                fill=fill,
            )
    elif name == "star":
        draw.polygon(_polygon(cx, cy, [r, r * 0.42] * 5, angle), fill=fill)


def _texture_mask(name, rng) -> np.ndarray:
    """A boolean (32, 32) mask of the texture inside a random rectangular patch."""
    h, w = rng.integers(14, 29, 2)
    top, left = rng.integers(0, SIZE - h + 1), rng.integers(0, SIZE - w + 1)
    period = rng.integers(4, 8)
    yy, xx = np.mgrid[:SIZE, :SIZE] + rng.integers(0, period, 2)[:, None, None]
    pattern = {
        "horizontal_stripes": yy % period < period // 2,
        "vertical_stripes": xx % period < period // 2,
        "checkerboard": ((yy // (period // 2 + 1)) + (xx // (period // 2 + 1))) % 2 == 0,
        "dots": (yy % period < 2) & (xx % period < 2),
    }[name]
    patch = np.zeros((SIZE, SIZE), bool)
    patch[top : top + h, left : left + w] = True
    return pattern & patch


def make_image(name: str, rng) -> np.ndarray:
    """One uint8 (32, 32, 3) image of class ``name``."""
    bg0, bg1, fg = _colours(rng)
    t = np.linspace(0, 1, SIZE)[:, None, None] if rng.random() < 0.5 else np.linspace(0, 1, SIZE)[None, :, None]
    img = np.broadcast_to(bg0 * (1 - t) + bg1 * t, (SIZE, SIZE, 3)).astype(np.float64)
    if name in SHAPES:
        mask = Image.new("L", (SIZE * SUPER, SIZE * SUPER), 0)
        _draw_shape(ImageDraw.Draw(mask), name, rng, 255)
        alpha = np.asarray(mask.resize((SIZE, SIZE), Image.LANCZOS), dtype=np.float64)[..., None] / 255
    else:
        alpha = _texture_mask(name, rng)[..., None].astype(np.float64)
    img = img * (1 - alpha) + fg * alpha + rng.normal(0, NOISE, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def main() -> None:
    out = pathlib.Path(__file__).resolve().parent / "data" / "cifar_sample"
    if out.exists():
        shutil.rmtree(out)  # a rerun must not leave files of an older layout behind
    rng = np.random.default_rng(20240611)
    total = 0
    for split, count in (("train", N_TRAIN), ("test", N_TEST)):
        for name in CLASSES:
            folder = out / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(make_image(name, rng)).save(folder / f"{name}_{i:03d}.png", optimize=True)
            total += count
    size = sum(p.stat().st_size for p in out.rglob("*.png"))
    print(f"wrote {out} ({total} images, {len(CLASSES)} classes, {size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
