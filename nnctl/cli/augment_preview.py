"""``nnctl augment-preview SPEC --output grid.png``: a PNG grid of training images and augmented copies.

Row 0 holds the originals, each further row one augmented version of the same samples, so a user
sees what the model sees. Each tile is min-max scaled on its own to 0..255 (this undoes rescale and
normalize for display), grayscale for one channel, RGB for three, the first channel otherwise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import typer

if TYPE_CHECKING:
    from nnctl.spec_model import Spec


def pick(n_total: int, n: int) -> np.ndarray:
    """``n`` indices spread evenly over the training set (image folders are stored class by class)."""
    return np.unique(np.linspace(0, n_total - 1, num=min(n, n_total)).round().astype(np.intp))


def to_tiles(x: np.ndarray) -> np.ndarray:
    """Images (N, H, W, C) -> uint8 (N, H, W, 1 or 3), each min-max scaled to 0..255 (a flat image is grey)."""
    x = x.astype(np.float64)
    x = x if x.shape[-1] in (1, 3) else x[..., :1]
    lo = x.min(axis=(1, 2, 3), keepdims=True)
    span = x.max(axis=(1, 2, 3), keepdims=True) - lo
    scaled = np.where(span > 0, (x - lo) / np.where(span > 0, span, 1.0), 0.5)
    return np.round(scaled * 255).astype(np.uint8)


def grid(rows: list[np.ndarray], scale: int, gap: int = 2) -> np.ndarray:
    """Rows of tiles (each (N, H, W, C) uint8) -> one (R (H s + gap) - gap, N (W s + gap) - gap, C) picture."""
    n, h, w, c = rows[0].shape
    th, tw = h * scale, w * scale
    out = np.full((len(rows) * (th + gap) - gap, n * (tw + gap) - gap, c), 255, dtype=np.uint8)
    for r, tiles in enumerate(rows):
        big = tiles.repeat(scale, axis=1).repeat(scale, axis=2)  # nearest-neighbour, so pixels stay visible
        for i in range(n):
            out[r * (th + gap) : r * (th + gap) + th, i * (tw + gap) : i * (tw + gap) + tw] = big[i]
    return out


def preview(
    spec: Spec, output: str, samples: int = 16, versions: int = 3, seed: int | None = None, scale: int | None = None
) -> dict:
    """Write the grid for a loaded spec; returns what was written (path, rows, columns, transforms)."""
    from nnctl.data import load_dataset
    from nnctl.data.augment import build_augmenter
    from nnctl.errors import DataError, SpecError

    source = spec.source
    if not spec.data.augment.present():
        raise SpecError(f"{source}: data.augment is empty: nothing to preview (try --set data.augment.rotation=15)")
    for name, value in (("--samples", samples), ("--versions", versions), ("--scale", 1 if scale is None else scale)):
        if value < 1:
            raise SpecError(f"{name}: expected a positive integer, found {value}")
    try:
        from PIL import Image
    except ImportError:
        raise DataError(
            "augment-preview writes a PNG with Pillow: Pillow, a core dependency: reinstall nnctl, or pip install Pillow"
        ) from None
    from nnctl.multi_spec import refuse_named

    refuse_named(spec, "augment-preview")
    ds = load_dataset(spec, with_test=False)
    if ds.x_train.ndim != 4:
        raise DataError(
            f"{spec.data.train}: augment-preview shows images (samples of shape [H, W, C]); "
            f"these samples have shape {list(ds.x_train.shape[1:])}"
        )
    augment = build_augmenter(spec.data.augment, ds.prep.kind, ds.x_train.shape[1:])
    x = ds.x_train[pick(len(ds.x_train), samples)]
    # the trainer's augmentation stream (spawn key 4) for the same seed
    rng = np.random.Generator(
        np.random.PCG64(np.random.SeedSequence(spec.seed if seed is None else seed, spawn_key=(4,)))
    )
    rows = [to_tiles(x)] + [to_tiles(augment(x, rng)) for _ in range(versions)]
    h, w = x.shape[1:3]
    scale = scale or max(1, 96 // max(h, w))
    picture = grid(rows, scale)
    Image.fromarray(picture[..., 0] if picture.shape[-1] == 1 else picture).save(output, format="PNG")
    return {
        "output": output,
        "rows": len(rows),
        "columns": len(x),
        "transforms": augment.names,
        "size": [picture.shape[1], picture.shape[0]],
    }


def register(app: typer.Typer, reports_errors) -> None:
    @app.command("augment-preview")
    @reports_errors
    def augment_preview(
        spec: str = typer.Argument(..., help="spec file with a data.augment table"),
        output: str = typer.Option(..., "--output", "-o", help="PNG file to write"),
        samples: int = typer.Option(16, help="training samples shown (spread over the training set)"),
        versions: int = typer.Option(3, help="augmented versions of each sample (one row each)"),
        seed: int | None = typer.Option(None, help="augmentation seed (default: the spec's seed)"),
        scale: int | None = typer.Option(None, help="pixels per image pixel (default: tiles about 96 px)"),
        set_: list[str] = typer.Option([], "--set", help="override a spec key: data.augment.zoom=0.2 (repeatable)"),
    ):
        """Write a PNG grid: original training images in the first row, augmented versions below."""
        from nnctl import spec as spec_mod

        s = spec_mod.load(spec, set_)
        done = preview(s, output, samples, versions, seed, scale)
        print(
            f"wrote {done['output']}: {done['columns']} samples x {done['rows']} rows "
            f"(original + {done['rows'] - 1} augmented; {', '.join(done['transforms']) or 'no transforms'})"
        )
