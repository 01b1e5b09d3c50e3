"""``nnctl generate CHECKPOINT``: samples of a GAN checkpoint's generator, as a PNG grid or a .npy array.

Samples come back in the training data's units (the checkpoint's rescale and normalisation undone), so a
.npy file goes straight into ``nnctl predict`` of a classifier trained on the same data. The grid shows
pixel data (IDX, image folders) on its own 0..255 scale, other data min-max scaled over the whole grid.
A conditional GAN's grid has one row per requested class (``--label 3``, ``--labels 0,1,2``; default
every class), each column one latent vector.
"""

from __future__ import annotations

import math
import pathlib

import numpy as np
import typer

MAX_GRID = 4096  # a 64 x 64 grid; more samples belong in a .npy file


def tiles(x: np.ndarray, kind: str) -> np.ndarray:
    """Samples (N, H, W[, C]) -> uint8 (N, H, W, 1 or 3): pixel kinds clipped to 0..255, others scaled together."""
    x = x[..., None] if x.ndim == 3 else x
    x = x if x.shape[-1] in (1, 3) else x[..., :1]
    if kind not in ("idx", "images"):
        lo, span = x.min(), x.max() - x.min()
        x = (x - lo) / span * 255 if span > 0 else np.full_like(x, 127.5)
    return np.round(np.clip(x, 0, 255)).astype(np.uint8)


def grid_picture(x: np.ndarray, kind: str, scale: int, per_row: int | None = None) -> np.ndarray:
    """A grid of every sample, ``per_row`` (default ceil(sqrt(N)), near-square) per row."""
    from nnctl.cli.augment_preview import grid

    t = tiles(x, kind)
    per_row = per_row or math.ceil(math.sqrt(len(t)))
    blank = np.full((per_row * math.ceil(len(t) / per_row) - len(t), *t.shape[1:]), 255, dtype=np.uint8)
    t = np.concatenate([t, blank])
    return grid([t[i : i + per_row] for i in range(0, len(t), per_row)], scale)


def parse_labels(label: list[int] | None, labels: str | None) -> list[int] | None:
    """``--label 3 --label 5`` and ``--labels 3,5`` -> [3, 5]; None when neither is given (every class)."""
    from nnctl.errors import SpecError

    out = list(label or [])
    for part in labels.split(",") if labels is not None else []:
        try:
            out.append(int(part.strip()))
        except ValueError:
            raise SpecError(
                f"--labels: expected comma-separated class numbers such as 0,3,7, found {labels!r}"
            ) from None
    return out if label or labels is not None else None


def register(app: typer.Typer, reports_errors) -> None:
    @app.command()
    @reports_errors
    def generate(
        checkpoint: str = typer.Argument(..., help='checkpoint written by nnctl train with train.mode = "gan"'),
        n: int = typer.Option(
            64,
            "--n",
            "-n",
            min=1,
            max=100_000,
            help="number of samples (conditional: over every requested class, in rows)",
        ),
        label: list[int] | None = typer.Option(
            None, "--label", help="conditional GAN: draw this class (repeat for more rows); default every class"
        ),
        labels: str | None = typer.Option(None, "--labels", help="conditional GAN: classes such as 0,3,7"),
        seed: int = typer.Option(0, min=0, max=2**32 - 1, help="seeds the latent draws: same seed, same samples"),
        output: str | None = typer.Option(
            None,
            "--output",
            "-o",
            help="grid.png (a picture) or samples.npy (the arrays); default <checkpoint>.samples.png",
        ),
        scale: int = typer.Option(2, min=1, max=16, help="PNG: pixels per sample pixel"),
        device: str = typer.Option("auto", help="auto, cpu or gpu"),
        json_: bool = typer.Option(False, "--json", help="one JSON object on stdout"),
    ):
        """Sample a GAN's generator: a PNG grid of images or a .npy array of every sample.

        Example: nnctl generate runs/dcgan-mnist.h5 --n 64 --seed 1 --output grid.png; a conditional GAN:
        nnctl generate runs/cgan-mnist.h5 --n 64 --label 3
        """
        from nnctl import fs, gan
        from nnctl.cli.output import emit_json
        from nnctl.errors import SpecError

        out = pathlib.Path(output) if output else pathlib.Path(checkpoint).with_suffix(".samples.png")
        ext = out.suffix.lower()
        if ext not in (".png", ".npy"):
            raise SpecError(
                f"--output {out}: expected a .png (grid) or .npy (arrays) path, found {ext or 'no'} extension"
            )
        if ext == ".png" and n > MAX_GRID:
            raise SpecError(f"--n {n}: a PNG grid holds at most {MAX_GRID} samples; write a .npy file for more")
        fs.check_output_file(out, "output")
        x, info = gan.generate(checkpoint, n, seed, device, parse_labels(label, labels))
        if ext == ".npy":

            def write(tmp):
                with open(tmp, "wb") as f:
                    np.save(f, x.astype(np.float32))
        else:
            if x.ndim not in (3, 4):
                raise SpecError(
                    f"--output {out}: a PNG grid needs image samples (height, width[, channels]); this "
                    f"generator makes samples of shape {info['shape']}; write a .npy file instead"
                )
            from PIL import Image

            rows = len(info.get("rows", ()))
            picture = grid_picture(x, info["kind"], scale, info["per_row"] if rows > 1 else None)
            image = Image.fromarray(picture[..., 0] if picture.shape[-1] == 1 else picture)

            def write(tmp):
                image.save(tmp, format="PNG")

        fs.atomic_write(out, write)
        info["output"] = str(out)
        if json_:
            emit_json(info)
        else:
            classes = f", classes {','.join(map(str, info['rows']))}" if "rows" in info else ""
            print(f"wrote {out}: {n} samples of shape {info['shape']} (seed {seed}, epoch {info['epoch']}{classes})")
