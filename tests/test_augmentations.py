"""The "augmentation" registry family: its members and keys, one source for the spec's [data.augment] table,
duplicate registrations refused, and every registered transform equal to a plain NumPy reference (per-sample
loops written from the documented maths, drawing the documented numbers from a twin Generator)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnctl import augmentations as AU
from nnctl import keras_names
from nnctl.data.augment import build_augmenter
from nnctl.errors import SpecError
from nnctl.fields import fields_of
from nnctl.registry import DuplicateName
from nnctl.spec_sections import Augment

RUN_ORDER = [
    "flip",
    "affine",
    "crop_padding",
    "brightness",
    "contrast",
    "jitter",
    "scaling",
    "time_warp",
    "step_dropout",
    "token_deletion",
    "token_swap",
    "noise",
]


# -- membership ----------------------------------------------------------------------------------------
def test_every_transform_is_registered_in_the_order_it_runs():
    assert [cls.name for cls in AU.ORDER] == RUN_ORDER
    assert AU.AUGMENTATIONS.names() == sorted(RUN_ORDER)
    assert all(AU.AUGMENTATIONS.get(name).name == name for name in RUN_ORDER)
    assert AU.AUGMENTATIONS.get("Crop-Padding") is AU.AUGMENTATIONS.get("crop_padding")  # the registry's matching


def test_the_spec_section_is_the_registered_keys():
    keys = {
        "flip": ["flip"],
        "affine": ["rotation", "width_shift", "height_shift", "zoom", "shear", "fill_mode", "cval"],
    }
    want = [key for name in RUN_ORDER for key in keys.get(name, [name])]
    assert list(fields_of(Augment)) == want == list(AU.fields())
    assert {key: cls.name for key, cls in AU.KEYS.items()} == {
        key: name for name in RUN_ORDER for key in keys.get(name, [name])
    }
    f = fields_of(Augment)
    assert (f["rotation"].range.lo, f["rotation"].range.hi) == (0, 180)
    assert f["fill_mode"].default == "nearest" and f["fill_mode"].choices == ("nearest", "constant", "reflect", "wrap")
    assert f["crop_padding"].types == (int,) and f["token_swap"].range.hi == 1 and not f["token_swap"].range.hi_open
    assert f["zoom"].doc == "images: scale in [1 - z, 1 + z]"
    assert keras_names.AUGMENT_RENAMES == {
        "rotation_range": "rotation",
        "width_shift_range": "width_shift",
        "height_shift_range": "height_shift",
        "zoom_range": "zoom",
        "shear_range": "shear",
    }


def test_the_typed_section_builds_the_same_augmenter_as_its_table():
    cfg = {"flip": "horizontal", "rotation": 15.0, "fill_mode": "reflect", "noise": 0.1}
    x = np.random.default_rng(0).random((4, 6, 7, 2))
    typed = Augment(**cfg)
    assert typed.given() == cfg and typed and not Augment()
    a, b = build_augmenter(typed, "images", x.shape[1:]), build_augmenter(cfg, "images", x.shape[1:])
    assert a.names == b.names == ["flip", "affine", "noise"]
    assert np.array_equal(a(x, np.random.default_rng(3)), b(x, np.random.default_rng(3)))


def test_a_duplicate_registration_fails_and_changes_nothing():
    before = (AU.AUGMENTATIONS.names(), list(AU.ORDER), dict(AU.KEYS))

    class Twice(AU.Augmentation):
        def __init__(self, flop: float | None = None):
            self.flop = flop

    with pytest.raises(DuplicateName, match=r"augmentation 'Flip' is already registered \(as 'flip'\)"):
        AU.register("Flip")(Twice)

    class SameKey(AU.Augmentation):
        def __init__(self, rotation: float | None = None):
            self.rotation = rotation

    with pytest.raises(DuplicateName, match="key 'rotation' of 'spin' is already a key of 'affine'"):
        AU.register("spin")(SameKey)
    assert (AU.AUGMENTATIONS.names(), list(AU.ORDER), dict(AU.KEYS)) == before


def test_an_unknown_key_names_the_closest_and_every_known_key():
    with pytest.raises(SpecError) as err:
        build_augmenter({"rotate": 10}, "images", (8, 8, 3))
    known = ", ".join(sorted(AU.fields()))
    assert str(err.value) == f"data.augment.rotate: unknown key; did you mean 'rotation'?; expected one of {known}"


# -- NumPy references ------------------------------------------------------------------------------------
def ref_source(h, w, deg, ty, tx, s, shear):
    """Source (row, col) of every output pixel of one sample: c + R(-θ) H(-φ) (p - c - t) / s, as matrices."""
    c = np.array([(h - 1) / 2, (w - 1) / 2])
    th, ph = math.radians(deg), math.radians(shear)
    rot = np.array([[math.cos(th), math.sin(th)], [-math.sin(th), math.cos(th)]])  # R(-θ) on (row, col)
    hsh = np.array([[1.0, 0.0], [-math.tan(ph), 1.0]])  # H(-φ): each row moves back by tan φ times its height
    out = np.empty((h, w, 2))
    for r in range(h):
        for q in range(w):
            out[r, q] = c + rot @ hsh @ (np.array([r, q]) - c - np.array([ty, tx])) / s
    return out


def ref_coordinate(u, n, mode):
    """A source coordinate brought into [0, n - 1]: clamp, mirror about the pixel edges, or wrap."""
    if mode == "reflect":
        period = u + 0.5
        period -= 2 * n * math.floor(period / (2 * n))
        u = period - 0.5 if period < n else 2 * n - period - 0.5
    elif mode == "wrap":
        u -= n * math.floor(u / n)
    return min(max(u, 0.0), n - 1.0)


def ref_affine(x, y, deg, shift, scale, shear, mode, cval):
    """Bilinear sampling pixel by pixel (masks: the nearest pixel), points outside filled as ``mode`` says."""
    n, h, w, _ = x.shape
    out = np.empty_like(x)
    masks = None if y is None else np.empty_like(y)
    for i in range(n):
        src = ref_source(h, w, deg[i], shift[i, 0], shift[i, 1], scale[i], 0.0 if shear is None else shear[i])
        for r in range(h):
            for q in range(w):
                sy, sx = src[r, q]
                u, v = ref_coordinate(sy, h, mode), ref_coordinate(sx, w, mode)
                r0, q0 = int(math.floor(u)), int(math.floor(v))
                r1, q1 = min(r0 + 1, h - 1), min(q0 + 1, w - 1)
                a, b = u - r0, v - q0
                out[i, r, q] = (
                    (1 - a) * (1 - b) * x[i, r0, q0]
                    + (1 - a) * b * x[i, r0, q1]
                    + a * (1 - b) * x[i, r1, q0]
                    + a * b * x[i, r1, q1]
                )
                if mode == "constant" and not (0 <= sy <= h - 1 and 0 <= sx <= w - 1):
                    out[i, r, q] = cval
                if masks is not None:
                    masks[i, r, q] = y[i, int(np.rint(u)), int(np.rint(v))]
                    if mode == "constant" and not (-0.5 <= sy <= h - 0.5 and -0.5 <= sx <= w - 0.5):
                        masks[i, r, q] = 0
    return out, masks


def flip_ref(x, y, rng, flip):
    h = rng.random(len(x)) < 0.5 if flip in ("horizontal", "both") else np.zeros(len(x), bool)
    v = rng.random(len(x)) < 0.5 if flip in ("vertical", "both") else np.zeros(len(x), bool)
    out, masks = x.copy(), None if y is None else y.copy()
    for i in range(len(x)):
        for axis, on in ((1, h[i]), (0, v[i])):
            if on:
                out[i] = np.flip(out[i], axis=axis)
                if masks is not None:
                    masks[i] = np.flip(masks[i], axis=axis)
    return out, masks


def affine_ref(x, y, rng, rotation=0.0, width_shift=0.0, height_shift=0.0, zoom=0.0, shear=0.0, **fill):
    n, h, w, _ = x.shape
    deg = rng.uniform(-rotation, rotation, n)
    shift = rng.uniform(-1, 1, (n, 2)) * np.array([height_shift * h, width_shift * w])
    scale = rng.uniform(1 - zoom, 1 + zoom, n)
    angles = rng.uniform(-shear, shear, n) if shear else None
    return ref_affine(x, y, deg, shift, scale, angles, fill.get("fill_mode", "nearest"), fill.get("cval", 0.0))


def crop_ref(x, y, rng, crop_padding):
    p = crop_padding
    offsets = rng.integers(0, 2 * p + 1, (len(x), 2))
    out, masks = np.empty_like(x), None if y is None else np.empty_like(y)
    for i, (r, q) in enumerate(offsets):
        out[i] = np.pad(x[i], ((p, p), (p, p), (0, 0)))[r : r + x.shape[1], q : q + x.shape[2]]
        if masks is not None:
            masks[i] = np.pad(y[i], p)[r : r + x.shape[1], q : q + x.shape[2]]
    return out, masks


def brightness_ref(x, y, rng, brightness):
    delta = rng.uniform(-brightness, brightness, len(x))
    span = x.max() - x.min()
    return np.stack([x[i] + delta[i] * span for i in range(len(x))]), y


def contrast_ref(x, y, rng, contrast):
    f = rng.uniform(1 - contrast, 1 + contrast, len(x))
    return np.stack([x[i].mean() + f[i] * (x[i] - x[i].mean()) for i in range(len(x))]), y


def noise_ref(x, y, rng, sigma):
    return x + sigma * rng.standard_normal(x.shape), y


def scaling_ref(x, y, rng, scaling):
    a = 1 + scaling * rng.standard_normal(len(x))
    return np.stack([a[i] * x[i] for i in range(len(x))]), y


def time_warp_ref(x, y, rng, time_warp):
    n, t, f = x.shape
    speeds = rng.uniform(1 - time_warp, 1 + time_warp, (n, 4))
    out = np.empty_like(x)
    for i in range(n):
        v = np.interp(np.linspace(0, 3, t), np.arange(4), speeds[i])  # the speed between 4 evenly spread knots
        tau = np.cumsum(v) - v[0]
        tau *= (t - 1) / tau[-1]
        for k in range(f):
            out[i, :, k] = np.interp(tau, np.arange(t), x[i, :, k])
    return out, y


def step_dropout_ref(x, y, rng, step_dropout):
    keep = rng.random((len(x), x.shape[1])) >= step_dropout
    return np.stack([x[i] * keep[i][:, None] for i in range(len(x))]), y


def token_deletion_ref(x, y, rng, token_deletion):
    drop = rng.random(x.shape) < token_deletion
    out = np.zeros_like(x)
    for i, row in enumerate(x):
        kept = [tok for tok, d in zip(row, drop[i]) if tok != 0 and not d]
        out[i, : len(kept)] = kept  # post-padded rows stay post-padded
    return out, y


def token_swap_ref(x, y, rng, token_swap):
    out = x.copy()
    lengths = [int(np.count_nonzero(row)) for row in x]
    starts = [int(np.argmax(row != 0)) for row in x]
    swaps = [round(token_swap * n) if n >= 2 else 0 for n in lengths]
    for i in range(max(swaps, default=0)):
        u = rng.random(len(x))  # one draw per sample every round
        for r in range(len(x)):
            j = min(starts[r] + int(math.floor(u[r] * max(lengths[r] - 1, 0))), x.shape[1] - 2)
            if swaps[r] > i and out[r, j] != 0 and out[r, j + 1] != 0:
                out[r, j], out[r, j + 1] = out[r, j + 1], out[r, j]
    return out, y


def images(seed=0, n=5, h=7, w=8, c=2):
    return np.random.default_rng(seed).random((n, h, w, c))


def series(seed=0):
    return np.random.default_rng(seed).normal(size=(5, 17, 3))


def ids(seed=0, n=9, t=10):
    r = np.random.default_rng(seed)
    x = r.integers(2, 40, (n, t))
    x[np.arange(t)[None, :] >= np.concatenate([[0, 1, t], r.integers(2, t, n - 3)])[:, None]] = 0
    return x


# (name, cfg, kind, batch, reference(x, y, rng) -> (x', y'))
CASES = [
    ("flip", {"flip": "both"}, "images", images, lambda x, y, g: flip_ref(x, y, g, "both")),
    ("flip", {"flip": "vertical"}, "images", images, lambda x, y, g: flip_ref(x, y, g, "vertical")),
    (
        "affine",
        {"rotation": 30, "width_shift": 0.2, "height_shift": 0.1, "zoom": 0.3, "shear": 20},
        "images",
        images,
        lambda x, y, g: affine_ref(x, y, g, 30, 0.2, 0.1, 0.3, 20),
    ),
    (
        "affine",
        {"rotation": 40, "zoom": 0.2, "fill_mode": "constant", "cval": -2.0},
        "images",
        images,
        lambda x, y, g: affine_ref(x, y, g, rotation=40, zoom=0.2, fill_mode="constant", cval=-2.0),
    ),
    (
        "affine",
        {"width_shift": 0.4, "shear": 30, "fill_mode": "reflect"},
        "images",
        images,
        lambda x, y, g: affine_ref(x, y, g, width_shift=0.4, shear=30, fill_mode="reflect"),
    ),
    (
        "affine",
        {"height_shift": 0.4, "rotation": 10, "fill_mode": "wrap"},
        "images",
        images,
        lambda x, y, g: affine_ref(x, y, g, rotation=10, height_shift=0.4, fill_mode="wrap"),
    ),
    ("crop_padding", {"crop_padding": 2}, "images", images, lambda x, y, g: crop_ref(x, y, g, 2)),
    ("brightness", {"brightness": 0.3}, "images", images, lambda x, y, g: brightness_ref(x, y, g, 0.3)),
    ("contrast", {"contrast": 0.5}, "images", images, lambda x, y, g: contrast_ref(x, y, g, 0.5)),
    ("noise", {"noise": 0.2}, "images", images, lambda x, y, g: noise_ref(x, y, g, 0.2)),
    (
        "noise",
        {"noise": 0.2},
        "tabular",
        lambda: np.random.default_rng(0).random((6, 4)),
        lambda x, y, g: noise_ref(x, y, g, 0.2),
    ),
    ("jitter", {"jitter": 0.1}, "timeseries", series, lambda x, y, g: noise_ref(x, y, g, 0.1)),
    ("scaling", {"scaling": 0.2}, "timeseries", series, lambda x, y, g: scaling_ref(x, y, g, 0.2)),
    ("time_warp", {"time_warp": 0.4}, "timeseries", series, lambda x, y, g: time_warp_ref(x, y, g, 0.4)),
    ("step_dropout", {"step_dropout": 0.3}, "timeseries", series, lambda x, y, g: step_dropout_ref(x, y, g, 0.3)),
    ("token_deletion", {"token_deletion": 0.4}, "text", ids, lambda x, y, g: token_deletion_ref(x, y, g, 0.4)),
    ("token_swap", {"token_swap": 0.5}, "text", ids, lambda x, y, g: token_swap_ref(x, y, g, 0.5)),
]


def test_every_registered_transform_has_a_reference():
    assert {case[0] for case in CASES} == set(AU.AUGMENTATIONS.names())


@pytest.mark.parametrize("name,cfg,kind,batch,ref", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
@pytest.mark.parametrize("seed", [0, 7])
def test_each_transform_equals_its_numpy_reference(name, cfg, kind, batch, ref, seed):
    x = batch()
    aug = build_augmenter(cfg, kind, x.shape[1:])
    assert aug.names == [name]
    got = aug(x, np.random.default_rng(seed))
    want, _ = ref(x, None, np.random.default_rng(seed))
    assert got.shape == x.shape and got.dtype == x.dtype
    if kind == "text":
        assert np.array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


@pytest.mark.parametrize("case", [c for c in CASES if c[2] == "images"], ids=lambda c: c[0])
def test_masks_follow_geometric_transforms_and_ignore_photometric_ones(case):
    name, cfg, _, batch, ref = case
    x = batch(seed=3)
    y = np.random.default_rng(4).integers(1, 5, x.shape[:3])
    got_x, got_y = build_augmenter(cfg, "segmentation", x.shape[1:]).pair(x, y, np.random.default_rng(5))
    want_x, want_y = ref(x, y, np.random.default_rng(5))
    np.testing.assert_allclose(got_x, want_x, rtol=0, atol=1e-9)
    assert np.array_equal(got_y, want_y)  # the photometric references pass the masks through


def test_a_chain_is_the_references_in_registered_order():
    """Each transform draws with its own amount (jitter's sigma is not scaling's) from one Generator in turn."""
    cfg = {"noise": 0.05, "step_dropout": 0.2, "time_warp": 0.3, "scaling": 0.5, "jitter": 0.01}
    x = series(seed=2)
    g = np.random.default_rng(11)
    want = x
    for ref in (
        lambda v: noise_ref(v, None, g, 0.01),
        lambda v: scaling_ref(v, None, g, 0.5),
        lambda v: time_warp_ref(v, None, g, 0.3),
        lambda v: step_dropout_ref(v, None, g, 0.2),
        lambda v: noise_ref(v, None, g, 0.05),
    ):
        want = ref(want)[0]
    aug = build_augmenter(cfg, "timeseries", x.shape[1:])
    assert aug.names == ["jitter", "scaling", "time_warp", "step_dropout", "noise"]
    np.testing.assert_allclose(aug(x, np.random.default_rng(11)), want, rtol=0, atol=1e-9)

    text = {"token_swap": 0.5, "token_deletion": 0.1}
    t = ids(seed=5)
    g = np.random.default_rng(2)
    want_t = token_swap_ref(token_deletion_ref(t, None, g, 0.1)[0], None, g, 0.5)[0]
    assert np.array_equal(build_augmenter(text, "text", t.shape[1:])(t, np.random.default_rng(2)), want_t)

    img = {"contrast": 0.3, "flip": "horizontal", "brightness": 0.2, "crop_padding": 1, "rotation": 20, "noise": 0.1}
    x = images(seed=6)
    g = np.random.default_rng(8)
    want = flip_ref(x, None, g, "horizontal")[0]
    want = affine_ref(want, None, g, rotation=20)[0]
    want = crop_ref(want, None, g, 1)[0]
    want = brightness_ref(want, None, g, 0.2)[0]
    want = contrast_ref(want, None, g, 0.3)[0]
    want = noise_ref(want, None, g, 0.1)[0]
    np.testing.assert_allclose(
        build_augmenter(img, "images", x.shape[1:])(x, np.random.default_rng(8)), want, atol=1e-9
    )
