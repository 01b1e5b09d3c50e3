"""Deterministic NumPy kernels of the augmentations (nnctl.augmentations draws their parameters).

Each works on a whole batch, with the batch as the first axis, and never modifies its input.
Images x (N, H, W, C), masks y (N, H, W), sequences x (N, T, F), token ids x (N, T) with 0 the padding.
"""

from __future__ import annotations

import numpy as np


# -- images ------------------------------------------------------------------------------------------
def flip_images(x: np.ndarray, horizontal: np.ndarray | None = None, vertical: np.ndarray | None = None) -> np.ndarray:
    """Mirror the samples whose mask (N,) is true: horizontal reverses W, vertical reverses H."""
    out = x
    if horizontal is not None:
        out = np.where(horizontal[:, None, None, None], out[:, :, ::-1], out)
    if vertical is not None:
        out = np.where(vertical[:, None, None, None], out[:, ::-1], out)
    return out if out is not x else x.copy()


def bilinear(x: np.ndarray, sy: np.ndarray, sx: np.ndarray) -> np.ndarray:
    """x (N, H, W, C) sampled at source rows/columns sy, sx (N, H', W'); outside points clamp to the edge.

    Four gathers from the flattened (N H W, C) batch, a + (b - a) w along columns then rows; a whole-pixel
    coordinate has weight 0 and returns the pixel exactly.
    """
    n, h, w, c = x.shape
    sy, sx = np.clip(sy, 0, h - 1), np.clip(sx, 0, w - 1)
    y0, x0 = sy.astype(np.intp), sx.astype(np.intp)  # non-negative, so truncation is floor
    wy, wx = (sy - y0).astype(x.dtype)[..., None], (sx - x0).astype(x.dtype)[..., None]
    down, right = (y0 < h - 1) * w, (x0 < w - 1).astype(np.intp)  # the last row/column is its own neighbour
    i00 = (np.arange(n)[:, None, None] * h + y0) * w + x0
    flat = x.reshape(n * h * w, c)
    # in place on the four gathered arrays: fresh large temporaries cost page faults on every batch
    top, b = np.take(flat, i00, axis=0), np.take(flat, i00 + right, axis=0)
    b -= top
    b *= wx
    top += b
    bottom, e = np.take(flat, i00 + down, axis=0), np.take(flat, i00 + down + right, axis=0)
    e -= bottom
    e *= wx
    bottom += e
    bottom -= top
    bottom *= wy
    top += bottom
    return top


def fill_coordinates(s: np.ndarray, n: int, mode: str) -> np.ndarray:
    """Source coordinates ``s`` mapped into [0, n - 1] as ``fill_mode`` says (Keras/scipy's modes).

    nearest: clamp to the edge; reflect: mirror about the edges (d c b a | a b c d | d c b a);
    wrap: modulo n (a b c d | a b c d); constant: clamp here, the caller then writes ``cval`` outside.
    """
    if mode == "reflect":
        u = np.mod(s + 0.5, 2 * n)
        s = np.where(u < n, u - 0.5, 2 * n - u - 0.5)
    elif mode == "wrap":
        s = np.mod(s, n)
    return np.clip(s, 0, n - 1)


def _affine_sources(
    shape, degrees: np.ndarray, shift: np.ndarray, scale: np.ndarray, shear: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Source rows and columns (N, H, W) that each output pixel of ``affine_images`` reads, before filling."""
    _, h, w = shape[:3]
    cy, cx = (h - 1) / 2, (w - 1) / 2
    gy, gx = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    py = gy[None] - cy - shift[:, 0, None, None]  # (N, H, W) relative to the centre, shift undone
    px = gx[None] - cx - shift[:, 1, None, None]
    if shear is not None:
        px = px - np.tan(np.deg2rad(shear))[:, None, None] * py
    theta = np.deg2rad(degrees)[:, None, None]
    cos, sin, s = np.cos(theta), np.sin(theta), scale[:, None, None]
    # rows grow downwards, so this inverse rotation turns the picture counter-clockwise as displayed
    return cy + (cos * py + sin * px) / s, cx + (cos * px - sin * py) / s


def affine_images(
    x: np.ndarray,
    degrees: np.ndarray,
    shift: np.ndarray,
    scale: np.ndarray,
    shear: np.ndarray | None = None,
    fill_mode: str = "nearest",
    cval: float = 0.0,
) -> np.ndarray:
    """Rotate by ``degrees`` (N,) counter-clockwise, move by ``shift`` (N, 2) pixels (down, right), enlarge by
    ``scale`` (N,), shear by ``shear`` (N,) degrees.

    Each output pixel p = (row, col) reads the input at c + R(-θ) H(-φ) (p - c - t) / s, c the image centre,
    R(θ) the rotation of the displayed picture (rows grow downwards), H(φ) the shear that moves each row
    sideways by tan(φ) times its distance from the centre. Points outside the input follow ``fill_mode``.
    """
    _, h, w, _ = x.shape
    sy, sx = _affine_sources(x.shape, degrees, shift, scale, shear)
    out = bilinear(x, fill_coordinates(sy, h, fill_mode), fill_coordinates(sx, w, fill_mode))
    if fill_mode == "constant":
        outside = (sy < 0) | (sy > h - 1) | (sx < 0) | (sx > w - 1)
        out[outside] = cval
    return out


def affine_masks(
    y: np.ndarray,
    degrees: np.ndarray,
    shift: np.ndarray,
    scale: np.ndarray,
    shear: np.ndarray | None = None,
    fill_mode: str = "nearest",
    fill: int = 0,
) -> np.ndarray:
    """The map of ``affine_images`` applied to integer masks y (N, H, W), nearest neighbour: each output pixel
    takes the class of the source pixel nearest to the point it reads (never a blend of two class ids);
    under fill_mode constant, points outside the mask take class ``fill``."""
    n, h, w = y.shape[:3]
    sy, sx = _affine_sources(y.shape, degrees, shift, scale, shear)
    iy = np.rint(fill_coordinates(sy, h, fill_mode)).astype(np.intp)
    ix = np.rint(fill_coordinates(sx, w, fill_mode)).astype(np.intp)
    out = y[np.arange(n)[:, None, None], iy, ix]
    if fill_mode == "constant":
        out[(sy < -0.5) | (sy > h - 0.5) | (sx < -0.5) | (sx > w - 0.5)] = fill
    return out


def crop_images(x: np.ndarray, pad: int, offsets: np.ndarray) -> np.ndarray:
    """Zero-pad by ``pad`` on each side, then crop H x W starting at ``offsets`` (N, 2) in [0, 2 pad]."""
    n, h, w, c = x.shape
    padded = np.zeros((n, h + 2 * pad, w + 2 * pad, c), dtype=x.dtype)
    padded[:, pad : pad + h, pad : pad + w] = x
    rows = offsets[:, 0, None, None] + np.arange(h)[None, :, None]
    cols = offsets[:, 1, None, None] + np.arange(w)[None, None, :]
    return padded[np.arange(n)[:, None, None], rows, cols]


# -- sequences ---------------------------------------------------------------------------------------
def warp_times(speeds: np.ndarray, steps: int) -> np.ndarray:
    """Source times τ (N, T) from knot speeds (N, K): running sum of the interpolated speed, spanning [0, T-1]."""
    k = speeds.shape[1]
    pos = np.arange(steps) * ((k - 1) / max(steps - 1, 1))
    k0 = np.minimum(np.floor(pos).astype(np.intp), k - 2)
    f = pos - k0
    v = speeds[:, k0] * (1 - f) + speeds[:, k0 + 1] * f
    c = np.cumsum(v, axis=1) - v[:, :1]  # τ(0) = 0
    return np.clip(c * ((steps - 1) / c[:, -1:]), 0, steps - 1)


def resample_series(x: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """x (N, T, F) read at fractional times ``tau`` (N, T') by linear interpolation."""
    t = x.shape[1]
    tau = np.clip(tau, 0, t - 1)
    i0 = np.floor(tau).astype(np.intp)
    i1 = np.minimum(i0 + 1, t - 1)
    f = (tau - i0)[..., None].astype(x.dtype)
    b = np.arange(len(x))[:, None]
    return x[b, i0] * (1 - f) + x[b, i1] * f


# -- text --------------------------------------------------------------------------------------------
def pre_padded(x: np.ndarray) -> bool:
    """Whether the batch pads at the start: most of its padded rows begin with 0 rather than end with it."""
    padded = (x == 0).any(axis=1) & (x != 0).any(axis=1)
    return int(np.sum(x[padded, 0] == 0)) > int(np.sum(x[padded, -1] == 0))


def delete_tokens(x: np.ndarray, drop: np.ndarray) -> np.ndarray:
    """Remove the tokens where ``drop`` (N, T) is true; the rest close up on the side away from the padding."""
    n, t = x.shape
    keep = (x != 0) & ~drop
    dest = np.cumsum(keep, axis=1) - 1
    if pre_padded(x):
        dest = dest + (t - keep.sum(axis=1, keepdims=True))
    out = np.zeros_like(x)
    rows = np.broadcast_to(np.arange(n)[:, None], x.shape)
    out[rows[keep], dest[keep]] = x[keep]
    return out


def swap_tokens(x: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    """round(p L) swaps of a random adjacent pair inside each sample's run of L tokens (a loop over swaps, not samples)."""
    n = len(x)
    nonzero = x != 0
    length = nonzero.sum(axis=1)
    start = nonzero.argmax(axis=1)
    swaps = np.where(length >= 2, np.round(p * length).astype(np.intp), 0)
    out = x.copy()
    rows = np.arange(n)
    for i in range(int(swaps.max(initial=0))):
        j = start + np.floor(rng.random(n) * np.maximum(length - 1, 0)).astype(np.intp)
        j = np.minimum(j, x.shape[1] - 2)
        active = (swaps > i) & (out[rows, j] != 0) & (out[rows, np.minimum(j + 1, x.shape[1] - 1)] != 0)
        r, a = rows[active], j[active]
        out[r, a], out[r, a + 1] = out[r, a + 1], out[r, a]
    return out


# -- shared helpers ---------------------------------------------------------------------------------
def as_float(x: np.ndarray) -> np.ndarray:
    """``x`` itself when it is floating point, else a float32 copy (noise on integer pixels needs fractions)."""
    return x if x.dtype.kind == "f" else x.astype(np.float32)


def normal(rng, shape, sigma: float, dtype) -> np.ndarray:
    """N(0, sigma²) drawn directly in float32/float64 (the Generator supports only those two)."""
    dt = np.dtype(dtype) if np.dtype(dtype) in (np.float32, np.float64) else np.dtype(np.float64)
    return (rng.standard_normal(shape, dtype=dt) * dt.type(sigma)).astype(dtype, copy=False)
