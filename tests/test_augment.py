"""Augmentation invariants: identities, shapes and dtypes, reproducibility, text/sequence transforms touching only
what they should, SpecErrors for keys that do not fit the data, and augmentation seeing training batches only."""

import re

import numpy as np
import pytest

from nnctl.data import augment as A
from nnctl.errors import SpecError

ALL_IMAGE = {
    "flip": "both",
    "rotation": 20,
    "width_shift": 0.1,
    "height_shift": 0.1,
    "zoom": 0.2,
    "crop_padding": 3,
    "brightness": 0.1,
    "contrast": 0.2,
    "noise": 0.05,
}
ALL_SEQ = {"jitter": 0.1, "scaling": 0.1, "time_warp": 0.3, "step_dropout": 0.2, "noise": 0.01}
ALL_TEXT = {"token_deletion": 0.3, "token_swap": 0.3}


def images(n=6, h=10, w=12, c=3, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).normal(size=(n, h, w, c)).astype(dtype)


def rng(seed=1):
    return np.random.default_rng(seed)


def post_padded_ids(n=8, t=12, vocab=50, seed=0):
    """Token ids 2..vocab-1 followed by zero padding, lengths 0..t."""
    r = np.random.default_rng(seed)
    x = r.integers(2, vocab, size=(n, t))
    lengths = np.concatenate([[0, 1, t], r.integers(2, t, n - 3)])
    x[np.arange(t)[None, :] >= lengths[:, None]] = 0
    return x


# -- images ------------------------------------------------------------------------------------------
def test_flip_twice_is_identity_and_flip_all_mirrors():
    x = images()
    every = np.ones(len(x), bool)
    once = A.flip_images(x, every, every)
    assert np.array_equal(once, x[:, ::-1, ::-1])
    assert np.array_equal(A.flip_images(once, every, every), x)
    mask = np.array([True, False] * 3)
    half = A.flip_images(x, mask)
    assert np.array_equal(half[mask], x[mask][:, :, ::-1]) and np.array_equal(half[~mask], x[~mask])


def test_flip_mirrors_about_half_of_a_batch():
    x = images(n=400, h=3, w=4, c=1)
    out = A.build_augmenter({"flip": "horizontal"}, "images", x.shape[1:])(x, rng())
    flipped = np.all(out == x[:, :, ::-1], axis=(1, 2, 3)) & ~np.all(out == x, axis=(1, 2, 3))
    assert 150 < flipped.sum() < 250


def test_identity_affine_and_crop():
    x = images()
    n = len(x)
    assert np.array_equal(A.affine_images(x, np.zeros(n), np.zeros((n, 2)), np.ones(n)), x)
    assert np.array_equal(A.crop_images(x, 3, np.full((n, 2), 3)), x)
    # ranges of zero draw exactly zero: an augmenter of zeros changes nothing
    out = A.build_augmenter({"rotation": 0, "width_shift": 0, "height_shift": 0, "zoom": 0}, "images", x.shape[1:])(
        x, rng()
    )
    assert np.array_equal(out, x) and out is not x


def test_affine_rotation_shift_and_edge_fill():
    x = images(h=8, w=8)
    n = len(x)
    rot = A.affine_images(x, np.full(n, 90.0), np.zeros((n, 2)), np.ones(n))
    np.testing.assert_allclose(rot, np.rot90(x, 1, axes=(1, 2)), atol=1e-5)  # counter-clockwise
    moved = A.affine_images(x, np.zeros(n), np.tile([[2.0, 1.0]], (n, 1)), np.ones(n))
    assert np.array_equal(moved[:, 2:, 1:], x[:, :-2, :-1])
    assert np.array_equal(moved[:, :2, 1:], np.repeat(x[:, :1, :-1], 2, axis=1))  # nearest edge, not zeros
    zoomed = A.affine_images(x, np.zeros(n), np.zeros((n, 2)), np.full(n, 2.0))
    assert zoomed.min() >= x.min() and zoomed.max() <= x.max()  # bilinear never leaves the value range


def test_crop_padding_moves_content_and_pads_with_zeros():
    x = images() + 10
    n = len(x)
    out = A.crop_images(x, 2, np.zeros((n, 2), int))
    assert np.all(out[:, :2] == 0) and np.all(out[:, :, :2] == 0)
    assert np.array_equal(out[:, 2:, 2:], x[:, :-2, :-2])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_image_augmenter_keeps_shape_dtype_and_input(dtype):
    x = images(dtype=dtype)
    before = x.copy()
    aug = A.build_augmenter(ALL_IMAGE, "images", x.shape[1:])
    out = aug(x, rng())
    assert out.shape == x.shape and out.dtype == x.dtype
    assert np.array_equal(x, before), "the input batch (a reused buffer) was modified"
    assert aug.names == ["flip", "affine", "crop_padding", "brightness", "contrast", "noise"]


def test_same_seed_same_batch_different_seed_different():
    x = images()
    aug = A.build_augmenter(ALL_IMAGE, "idx", x.shape[1:])
    assert np.array_equal(aug(x, rng(5)), aug(x, rng(5)))
    assert not np.allclose(aug(x, rng(5)), aug(x, rng(6)))


def test_brightness_and_contrast():
    x = images()
    out = A.build_augmenter({"brightness": 0.2}, "images", x.shape[1:])(x, rng())
    shift = (out - x).reshape(len(x), -1)
    np.testing.assert_allclose(shift, shift[:, :1].repeat(shift.shape[1], 1), atol=1e-5)  # one delta per sample
    assert np.all(np.abs(shift[:, 0]) <= 0.2 * (x.max() - x.min()) + 1e-5)
    out = A.build_augmenter({"contrast": 0.5}, "images", x.shape[1:])(x, rng())
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), x.mean(axis=(1, 2, 3)), atol=1e-5)  # mean kept
    ratio = out.std(axis=(1, 2, 3)) / x.std(axis=(1, 2, 3))
    assert np.all((ratio >= 0.5 - 1e-5) & (ratio <= 1.5 + 1e-5)) and np.ptp(ratio) > 0


def test_noise_has_the_requested_std():
    x = np.zeros((64, 16, 16, 1), np.float32)
    out = A.build_augmenter({"noise": 0.3}, "images", x.shape[1:])(x, rng())
    assert abs(out.std() - 0.3) < 0.01 and abs(out.mean()) < 0.01


# -- sequences ----------------------------------------------------------------------------------------
def series(n=5, t=30, f=2, seed=0):
    return np.random.default_rng(seed).normal(size=(n, t, f)).astype(np.float32)


def test_sequence_augmenter_keeps_shape_dtype_and_input():
    x = series()
    before = x.copy()
    aug = A.build_augmenter(ALL_SEQ, "timeseries", x.shape[1:])
    out = aug(x, rng())
    assert out.shape == x.shape and out.dtype == x.dtype and np.array_equal(x, before)
    assert np.array_equal(aug(x, rng(3)), aug(x, rng(3))) and not np.allclose(aug(x, rng(3)), aug(x, rng(4)))


def test_time_warp_identity_endpoints_and_monotone():
    x = series()
    t = x.shape[1]
    assert np.array_equal(A.resample_series(x, np.tile(np.arange(t, dtype=float), (len(x), 1))), x)
    tau = A.warp_times(np.ones((len(x), 4)), t)
    np.testing.assert_allclose(tau, np.arange(t)[None].repeat(len(x), 0), atol=1e-9)
    tau = A.warp_times(np.random.default_rng(0).uniform(0.5, 1.5, (len(x), 4)), t)
    assert np.all(np.diff(tau, axis=1) > 0) and np.allclose(tau[:, 0], 0) and np.allclose(tau[:, -1], t - 1)
    out = A.build_augmenter({"time_warp": 0.4}, "timeseries", x.shape[1:])(x, rng())
    assert np.array_equal(out[:, 0], x[:, 0])  # the first step stays; values interpolate between neighbours
    lo = np.minimum(x[:, :-1], x[:, 1:]).min(axis=1)
    assert np.all(out.min(axis=1) >= lo - 1e-6)


def test_scaling_and_step_dropout():
    x = series() + 5
    out = A.build_augmenter({"scaling": 0.2}, "timeseries", x.shape[1:])(x, rng())
    factor = out / x
    np.testing.assert_allclose(factor, factor[:, :1, :1] * np.ones_like(factor), rtol=1e-5)  # one factor per sample
    out = A.build_augmenter({"step_dropout": 0.3}, "timeseries", x.shape[1:])(x, rng())
    zero = np.all(out == 0, axis=2)
    assert np.array_equal(out[~zero], x[~zero]) and 0.15 < zero.mean() < 0.45
    assert not np.any((out == 0).any(axis=2) & ~zero)  # whole steps, never single features


# -- text ---------------------------------------------------------------------------------------------
def test_token_deletion_keeps_order_padding_and_ids():
    x = post_padded_ids(n=200, seed=2)
    out = A.build_augmenter({"token_deletion": 0.3}, "text", x.shape[1:])(x, rng())
    assert out.shape == x.shape and out.dtype == x.dtype
    for row_in, row_out in zip(x, out):
        kept = row_out[row_out != 0]
        n = len(kept)
        assert np.all(row_out[n:] == 0), "padding must stay at the end"
        it = iter(row_in[row_in != 0])
        assert all(tok in it for tok in kept), "kept tokens must be a subsequence of the input"
    assert (out != 0).sum() < (x != 0).sum()
    assert set(np.unique(out)) <= set(np.unique(x))


def test_token_deletion_on_pre_padded_rows_keeps_padding_at_the_start():
    x = post_padded_ids(n=50, seed=3)
    pre = np.array([np.concatenate([r[r == 0], r[r != 0]]) for r in x])
    out = A.delete_tokens(pre, np.random.default_rng(0).random(pre.shape) < 0.4)
    for row in out:
        nz = np.nonzero(row)[0]
        assert len(nz) == 0 or np.all(row[nz[0] :] != 0)


def test_token_swap_permutes_only_adjacent_tokens_within_each_row():
    x = post_padded_ids(n=200, seed=4)
    out = A.build_augmenter({"token_swap": 0.3}, "text", x.shape[1:])(x, rng())
    assert np.array_equal(out == 0, x == 0), "padding positions never change"
    assert np.array_equal(np.sort(out, axis=1), np.sort(x, axis=1)), "each row keeps its multiset of ids"
    assert not np.array_equal(out, x)
    short = x[(x != 0).sum(axis=1) < 2]
    assert np.array_equal(A.swap_tokens(short, 1.0, rng()), short)


def test_text_augmenter_is_reproducible_and_never_modifies_input():
    x = post_padded_ids(n=100)
    before = x.copy()
    aug = A.build_augmenter(ALL_TEXT, "text", x.shape[1:])
    assert np.array_equal(aug(x, rng(7)), aug(x, rng(7))) and np.array_equal(x, before)
    assert not np.array_equal(aug(x, rng(7)), aug(x, rng(8)))


# -- errors -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cfg,kind,shape,message",
    [
        ({"rotation": 10}, "timeseries", (20, 1), "data.augment.rotation: applies to images"),
        ({"jitter": 0.1}, "images", (8, 8, 3), "data.augment.jitter: applies to sequences"),
        ({"token_swap": 0.1}, "tabular", (4,), "data.augment.token_swap: applies to text"),
        ({"noise": 0.1}, "text", (12,), "data.augment.noise: applies to numeric inputs"),
        ({"zoom": 1.5}, "images", (8, 8, 3), "data.augment.zoom: expected a number in [0, 1), found 1.5"),
        ({"crop_padding": 2.5}, "images", (8, 8, 3), "data.augment.crop_padding: expected a non-negative integer"),
        ({"flip": "sideways"}, "images", (8, 8, 3), "data.augment.flip: expected one of horizontal, vertical, both"),
        ({"rotate": 10}, "images", (8, 8, 3), "data.augment.rotate: unknown key"),
    ],
)
def test_keys_that_do_not_fit_raise_spec_errors(cfg, kind, shape, message):
    with pytest.raises(SpecError, match="^" + re.escape(message)):
        A.build_augmenter(cfg, kind, shape)


def test_families():
    assert A.family_of("arrays", (8, 8, 1)) == "images" and A.family_of("idx", (28, 28, 1)) == "images"
    assert A.family_of("arrays", (30, 2)) == "sequences" and A.family_of("tabular", (4,)) == "other"
    x = np.ones((3, 4))
    assert A.build_augmenter({"noise": 0.1}, "tabular", (4,))(x, rng()).shape == (3, 4)


# -- only training batches ----------------------------------------------------------------------------
def test_augmenter_sees_only_training_batches_never_labels(tmp_path, monkeypatch):
    from nnctl import run
    from nnctl import spec as spec_mod
    from nnctl.data import load_dataset

    r = np.random.default_rng(0)
    x = r.normal(size=(40, 6, 6, 1)).astype(np.float32)
    y = (x.mean(axis=(1, 2, 3)) > 0).astype(np.int64)
    np.savez(tmp_path / "train.npz", x=x, y=y)
    raw = {
        "seed": 3,
        "data": {"train": "train.npz", "validation": {"split": 0.25}, "augment": {"noise": 5.0}},
        "model": {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 2, "activation": "softmax"}]},
        "train": {"loss": "sparse_categorical_crossentropy", "epochs": 2, "batch_size": 8},
        "output": {"checkpoint": str(tmp_path / "m.h5")},
    }
    seen = []
    real = A.build_augmenter

    def spy(cfg, kind, shape):
        aug = real(cfg, kind, shape)

        def wrapped(*args):
            assert len(args) == 2 and isinstance(args[1], np.random.Generator)  # (x, rng): no labels
            seen.append(args[0].copy())
            return aug(*args)

        return wrapped

    monkeypatch.setattr(A, "build_augmenter", spy)
    run.train(spec_mod.validate(raw, base_dir=tmp_path))
    ds = load_dataset(spec_mod.validate(raw, base_dir=tmp_path))
    assert sum(len(b) for b in seen) == 2 * len(ds.x_train)
    batches = np.concatenate(seen).reshape(len(np.concatenate(seen)), -1)
    train_rows = {row.tobytes() for row in ds.x_train.reshape(len(ds.x_train), -1)}
    val_rows = {row.tobytes() for row in ds.x_val.reshape(len(ds.x_val), -1)}
    assert all(row.tobytes() in train_rows for row in batches)
    assert not any(row.tobytes() in val_rows for row in batches)


# -- fill modes and shear: whole-pixel moves have exact NumPy references ---------------------------
def _shift_right(x, pixels, mode, cval=0.0):
    from nnctl.data.augment import affine_images

    n = len(x)
    return affine_images(x, np.zeros(n), np.tile([0.0, pixels], (n, 1)), np.ones(n), fill_mode=mode, cval=cval)


def test_fill_modes_match_numpy_padding():
    x = np.random.default_rng(0).random((2, 5, 6, 3))
    k = 2
    np.testing.assert_allclose(_shift_right(x, k, "wrap"), np.roll(x, k, axis=2), atol=1e-12)
    reflected = np.pad(x, ((0, 0), (0, 0), (k, 0), (0, 0)), mode="symmetric")[:, :, :6]
    np.testing.assert_allclose(_shift_right(x, k, "reflect"), reflected, atol=1e-12)
    nearest = np.concatenate([np.repeat(x[:, :, :1], k, axis=2), x[:, :, :-k]], axis=2)
    np.testing.assert_allclose(_shift_right(x, k, "nearest"), nearest, atol=1e-12)
    const = _shift_right(x, k, "constant", cval=-1.0)
    assert (const[:, :, :k] == -1.0).all()
    np.testing.assert_allclose(const[:, :, k:], x[:, :, :-k], atol=1e-12)


def test_shear_moves_each_row_by_its_distance_from_the_centre():
    from nnctl.data.augment import affine_images

    x = np.random.default_rng(1).random((1, 5, 7, 1))
    out = affine_images(x, np.zeros(1), np.zeros((1, 2)), np.ones(1), shear=np.array([45.0]), fill_mode="wrap")
    want = np.stack([np.roll(x[0, r], r - 2, axis=0) for r in range(5)])  # tan 45 = 1 pixel per row
    np.testing.assert_allclose(out[0], want, atol=1e-9)
