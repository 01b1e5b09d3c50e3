"""On-the-fly augmentation of training batches: ``build_augmenter(cfg, kind, sample_shape)(x, rng) -> x'``.

Images, x float (N, H, W, C):
  flip           mirror each sample with p = 0.5 ("both": each axis independently)
  rotation r, width_shift sw, height_shift sh, zoom z, shear a: ONE affine map per sample, sampled bilinearly,
                 p_src = c + R(-θ) H(-φ) (p - c - t) / s,  θ ~ U[-r, r] degrees, t ~ (U[-sh, sh] H, U[-sw, sw] W),
                 s ~ U[1 - z, 1 + z] (s > 1 enlarges), φ ~ U[-a, a] degrees (H shears rows sideways);
                 points outside the image follow fill_mode: nearest (edge pixel, the default), constant
                 (cval), reflect or wrap, as Keras's ImageDataGenerator
  crop_padding p pad with p zeros on each side, crop back at a random offset in [0, 2p] on each axis
  brightness b   x + δ (max(x) - min(x)) over the batch, δ ~ U[-b, b] per sample
  contrast c     m + f (x - m), m the sample's mean, f ~ U[1 - c, 1 + c]
  noise σ        x + N(0, σ²)  (also for sequences and tables: any non-text input)
Sequences, x float (N, T, F):
  jitter σ       x + N(0, σ²)
  scaling s      a x, a ~ N(1, s²) per sample
  time_warp w    x'(t) = x(τ(t)), linear interpolation; τ = the running sum of a speed that is piecewise linear
                 between 4 knots drawn from U[1 - w, 1 + w], rescaled so τ(0) = 0 and τ(T-1) = T-1
  step_dropout p each step (all its features) set to 0 with probability p
Text, x int token ids (N, T), 0 = padding:
  token_deletion p  each token dropped with probability p; the rest keep their order and the padding side
  token_swap p      round(p L) swaps of random adjacent token pairs, L the sample's token count

Segmentation (data.kind = "segmentation"): ``JointAugmenter.pair(x, y, rng)`` draws once per sample and applies
flip, the affine map and crop_padding to the images and to their integer masks y (N, H, W) alike, the masks by
nearest neighbour (the class of the source pixel nearest to the point read; fill_mode constant fills class 0);
brightness, contrast and noise change the images only.

Values are in units of the preprocessed inputs (after rescale/normalize), so 0 is the padding or fill.
Transforms run in the fixed order above, each drawing from the numpy Generator passed in: the same
seed gives the same batch. Each is vectorised over the batch; the input batch is never modified.
Every per-sample draw has the batch as its first axis, size (N, ...): data-parallel ranks pass a
``nnctl.rowshare.RowShare``, which draws for the whole global batch and returns the rank's rows, so
N ranks augment as 1 process (brightness's value span and token_swap's count of rounds come from the
rank's rows, though).
"""

from __future__ import annotations

import numpy as np

from nnctl.errors import SpecError

IMAGE = (
    "flip",
    "rotation",
    "width_shift",
    "height_shift",
    "zoom",
    "shear",
    "fill_mode",
    "cval",
    "crop_padding",
    "brightness",
    "contrast",
    "noise",
)
SEQUENCE = ("jitter", "scaling", "time_warp", "step_dropout", "noise")
TEXT = ("token_deletion", "token_swap")
FAMILIES = {"images": IMAGE, "sequences": SEQUENCE, "text": TEXT, "other": ("noise",)}
WHAT = {
    "images": "images (samples of shape [H, W, C])",
    "sequences": "sequences (samples of shape [T, F])",
    "text": "text token ids",
}
# (low, high, high included): the accepted range of each numeric key
RANGES = {
    "rotation": (0, 180, True),
    "shear": (0, 90, False),
    "width_shift": (0, 1, False),
    "height_shift": (0, 1, False),
    "zoom": (0, 1, False),
    "crop_padding": (0, float("inf"), False),
    "brightness": (0, float("inf"), False),
    "contrast": (0, 1, True),
    "noise": (0, float("inf"), False),
    "jitter": (0, float("inf"), False),
    "scaling": (0, float("inf"), False),
    "time_warp": (0, 1, False),
    "step_dropout": (0, 1, False),
    "token_deletion": (0, 1, False),
    "token_swap": (0, 1, True),
}
FLIPS = ("horizontal", "vertical", "both")


def family_of(kind: str, sample_shape) -> str:
    """Which transforms apply: images for [H, W, C] samples, sequences for time series or [T, F] arrays."""
    if kind == "text":
        return "text"
    if kind == "timeseries" or (kind == "arrays" and len(sample_shape) == 2):
        return "sequences"
    if len(sample_shape) == 3:
        return "images"
    return "other"


# -- images: deterministic kernels (tests call these with fixed parameters) -------------------------
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


# -- random steps ------------------------------------------------------------------------------------
def _float(x):
    return x if x.dtype.kind == "f" else x.astype(np.float32)


def _normal(rng, shape, sigma, dtype):
    """N(0, sigma²) drawn directly in float32/float64 (the Generator supports only those two)."""
    dt = np.dtype(dtype) if np.dtype(dtype) in (np.float32, np.float64) else np.dtype(np.float64)
    return (rng.standard_normal(shape, dtype=dt) * dt.type(sigma)).astype(dtype, copy=False)


def _image_steps(cfg: dict) -> list:
    return [(name, lambda x, rng, step=step: step(x, None, rng)[0]) for name, step in _joint_image_steps(cfg)]


def _joint_image_steps(cfg: dict) -> list:
    """(name, step) pairs, each step(x, y, rng) -> (x', y'): one draw per sample, applied to the images x and,
    for the geometric steps (flip, affine, crop_padding), to their masks y (N, H, W) as well, nearest
    neighbour; y None (plain images) is passed through. The draws are those of the image-only steps."""
    steps = []
    if cfg.get("flip"):
        mode = cfg["flip"]

        def flip(x, y, rng):
            h = rng.random(len(x)) < 0.5 if mode in ("horizontal", "both") else None
            v = rng.random(len(x)) < 0.5 if mode in ("vertical", "both") else None
            return flip_images(x, h, v), (None if y is None else flip_images(y[..., None], h, v)[..., 0])

        steps.append(("flip", flip))
    r, sw, sh, z, shear = (float(cfg.get(k) or 0) for k in ("rotation", "width_shift", "height_shift", "zoom", "shear"))
    fill, cval = cfg.get("fill_mode") or "nearest", float(cfg.get("cval") or 0.0)
    if r or sw or sh or z or shear:

        def affine(x, y, rng):
            n, h, w, _ = x.shape
            deg = rng.uniform(-r, r, n)
            shift = rng.uniform(-1, 1, (n, 2)) * np.array([sh * h, sw * w])
            scale = rng.uniform(1 - z, 1 + z, n)
            angles = rng.uniform(-shear, shear, n) if shear else None  # drawn last: older seeds keep their draws
            return (
                affine_images(x, deg, shift, scale, angles, fill, cval),
                None if y is None else affine_masks(y, deg, shift, scale, angles, fill),
            )

        steps.append(("affine", affine))
    if cfg.get("crop_padding"):
        pad = int(cfg["crop_padding"])

        def crop(x, y, rng):
            offsets = rng.integers(0, 2 * pad + 1, (len(x), 2))
            return crop_images(x, pad, offsets), (
                None if y is None else crop_images(y[..., None], pad, offsets)[..., 0]
            )

        steps.append(("crop_padding", crop))
    if cfg.get("brightness"):
        b = float(cfg["brightness"])

        def brightness(x, y, rng):
            span = float(x.max() - x.min()) if x.size else 0.0
            delta = rng.uniform(-b, b, (len(x), 1, 1, 1)) * (span or 1.0)
            return x + delta.astype(x.dtype), y

        steps.append(("brightness", brightness))
    if cfg.get("contrast"):
        c = float(cfg["contrast"])

        def contrast(x, y, rng):
            mean = x.mean(axis=(1, 2, 3), keepdims=True)
            return (x - mean) * rng.uniform(1 - c, 1 + c, (len(x), 1, 1, 1)).astype(x.dtype) + mean, y

        steps.append(("contrast", contrast))
    return steps


def _sequence_steps(cfg: dict) -> list:
    steps = []
    if cfg.get("jitter"):
        s = float(cfg["jitter"])
        steps.append(("jitter", lambda x, rng: x + _normal(rng, x.shape, s, x.dtype)))
    if cfg.get("scaling"):
        s = float(cfg["scaling"])
        steps.append(("scaling", lambda x, rng: x * (1 + _normal(rng, (len(x), 1, 1), s, x.dtype))))
    if cfg.get("time_warp"):
        w = float(cfg["time_warp"])

        def time_warp(x, rng):
            if x.shape[1] < 2:
                return x.copy()
            return resample_series(x, warp_times(rng.uniform(1 - w, 1 + w, (len(x), 4)), x.shape[1]))

        steps.append(("time_warp", time_warp))
    if cfg.get("step_dropout"):
        p = float(cfg["step_dropout"])
        steps.append(("step_dropout", lambda x, rng: x * (rng.random((len(x), x.shape[1], 1)) >= p).astype(x.dtype)))
    return steps


def _text_steps(cfg: dict) -> list:
    steps = []
    if cfg.get("token_deletion"):
        p = float(cfg["token_deletion"])
        steps.append(("token_deletion", lambda x, rng: delete_tokens(x, rng.random(x.shape) < p)))
    if cfg.get("token_swap"):
        p = float(cfg["token_swap"])
        steps.append(("token_swap", lambda x, rng: swap_tokens(x, p, rng)))
    return steps


class Augmenter:
    """The configured transforms in order; ``augmenter(x, rng)`` returns a new array and never touches ``x``."""

    def __init__(self, steps: list, family: str):
        self.steps, self.family = steps, family

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.steps]

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = x if self.family == "text" else _float(x)
        for _, fn in self.steps:
            out = fn(out, rng)
        return out.copy() if out is x else out


class JointAugmenter(Augmenter):
    """Images and their masks (segmentation): ``pair(x, y, rng)`` applies each geometric step with one draw to
    both (masks nearest neighbour), the photometric ones (brightness, contrast, noise) to the images only.
    Called on images alone it is the ordinary image augmenter, with the same draws."""

    joint = True

    def __init__(self, steps: list, family: str, joint_steps: list):
        super().__init__(steps, family)
        self.joint_steps = joint_steps

    def pair(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(x', y') for images x (N, H, W, C) and integer masks y (N, H, W); neither input is modified."""
        out, masks = _float(x), y
        for _, fn in self.joint_steps:
            out, masks = fn(out, masks, rng)
        return (out.copy() if out is x else out), (masks.copy() if masks is y else masks)


def _check(cfg: dict, fam: str, kind: str, sample_shape) -> None:
    for key, value in cfg.items():
        where = f"data.augment.{key}"
        if key not in RANGES and key not in ("flip", "fill_mode", "cval"):
            known = sorted({*RANGES, "flip", "fill_mode", "cval"})
            raise SpecError(f"{where}: unknown key; expected one of {', '.join(known)}")
        if key not in FAMILIES[fam]:
            owners = [f for f, keys in FAMILIES.items() if key in keys]
            what = "numeric inputs (images, sequences, tables)" if "other" in owners else WHAT[owners[0]]
            raise SpecError(f"{where}: applies to {what}, not {kind} data with samples of shape {list(sample_shape)}")
        if key == "flip":
            if value not in FLIPS and value is not None:
                raise SpecError(f"{where}: expected one of {', '.join(FLIPS)}, found {value!r}")
            continue
        if key in ("fill_mode", "cval"):  # the spec validator checked their values
            continue
        if value is None:
            continue
        lo, hi, closed = RANGES[key]
        if key == "crop_padding" and (not isinstance(value, int) or isinstance(value, bool)):
            raise SpecError(f"{where}: expected a non-negative integer number of pixels, found {value!r}")
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not (lo <= value <= hi if closed else lo <= value < hi)
        ):
            span = f"at least {lo}" if hi == float("inf") else f"in [{lo}, {hi}{']' if closed else ')'}"
            raise SpecError(f"{where}: expected a number {span}, found {value!r}")


def build_augmenter(cfg: dict, kind: str, sample_shape: tuple) -> Augmenter:
    """The callable ``(x_batch, rng) -> new batch`` for the spec's ``data.augment`` table; SpecError for a key
    that does not apply to the data kind or a value out of range."""
    cfg = dict(cfg or {})
    fam = family_of(kind, tuple(sample_shape))
    _check(cfg, fam, kind, sample_shape)
    steps = {"images": _image_steps, "sequences": _sequence_steps, "text": _text_steps, "other": lambda c: []}[fam](cfg)
    noise = None
    if fam != "text" and cfg.get("noise"):
        s = float(cfg["noise"])
        noise = ("noise", lambda x, rng: x + _normal(rng, x.shape, s, x.dtype))
        steps.append(noise)
    if kind == "segmentation" and fam == "images":  # masks follow their images through the geometric steps
        joint = _joint_image_steps(cfg)
        if noise is not None:
            joint.append(("noise", lambda x, y, rng, fn=noise[1]: (fn(x, rng), y)))
        return JointAugmenter(steps, fam, joint)
    return Augmenter(steps, fam)
