"""Segmentation (issue 18): per-pixel losses and metrics against hand-computed and reference values, masks
that follow their images through augmentation, mask folder errors, and train/evaluate/predict from the CLI."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from helpers import dev, host
from nnctl import losses, metrics
from nnctl.data import augment as A

RNG = np.random.default_rng(18)


def _value(loss, p, y, w=None):
    return float(host(loss.value(dev(np.asarray(p, np.float64)), dev(np.asarray(y)), dev(w))))


def _numeric_grad(f, p, h=1e-6):
    g = np.zeros_like(p)
    for i in np.ndindex(p.shape):
        old = p[i]
        p[i] = old + h
        fp = f(p)
        p[i] = old - h
        fm = f(p)
        p[i] = old
        g[i] = (fp - fm) / (2 * h)
    return g


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# -- dice ---------------------------------------------------------------------------------------------
def test_dice_hand_computed():
    # one sample, two pixels, two classes: p = [[0.8, 0.2], [0.4, 0.6]], y = [0, 1], smooth 1
    p = np.array([[[[0.8, 0.2], [0.4, 0.6]]]])  # (N=1, H=1, W=2, C=2)
    y = np.array([[[0, 1]]])
    # class 0: I = 0.8, S = 0.8 + 0.4 + 1 = 2.2 -> (1.6 + 1) / (2.2 + 1) = 0.8125
    # class 1: I = 0.6, S = 0.2 + 0.6 + 1 = 1.8 -> (1.2 + 1) / (1.8 + 1) = 0.785714...
    assert _value(losses.get("dice"), p, y) == pytest.approx(1 - (0.8125 + 2.2 / 2.8) / 2, rel=1e-12)
    # without smoothing: 1 - (1.6 / 2.2 + 1.2 / 1.8) / 2
    assert _value(losses.get("dice", smooth=1e-12), p, y) == pytest.approx(1 - (1.6 / 2.2 + 1.2 / 1.8) / 2, rel=1e-9)
    # a perfect prediction scores 0; an ignored pixel changes nothing
    assert _value(losses.get("dice"), np.eye(2)[y], y) == pytest.approx(0.0, abs=1e-12)
    p3 = np.concatenate([p, [[[[0.1, 0.9]]]]], axis=2)
    y3 = np.array([[[0, 1, 255]]])
    assert _value(losses.get("dice", ignore_class=255), p3, y3) == pytest.approx(_value(losses.get("dice"), p, y))


def test_dice_against_numpy_per_sample_and_class_over_the_spatial_axes():
    n, h, w, k = 3, 4, 5, 3
    p = _softmax(RNG.normal(size=(n, h, w, k)))
    y = RNG.integers(0, k, size=(n, h, w))
    onehot = np.eye(k)[y]
    inter = (p * onehot).sum(axis=(1, 2))
    total = p.sum(axis=(1, 2)) + onehot.sum(axis=(1, 2))
    per_sample = 1 - ((2 * inter + 0.5) / (total + 0.5)).mean(axis=1)
    loss = losses.get("dice", smooth=0.5)
    assert _value(loss, p, y) == pytest.approx(per_sample.mean(), rel=1e-12)
    wts = np.array([2.0, 0.0, 1.0])
    assert _value(loss, p, y, wts) == pytest.approx((wts * per_sample).sum() / n, rel=1e-12)


@pytest.mark.parametrize("kw", [{}, {"smooth": 0.1}, {"ignore_class": 255}])
def test_dice_gradient_matches_finite_differences(kw):
    loss = losses.get("dice", **kw)
    p = _softmax(RNG.normal(size=(2, 3, 4, 3)))
    y = RNG.integers(0, 3, size=(2, 3, 4))
    if "ignore_class" in kw:
        y[0, 0, :2] = 255
    yd = dev(y)
    num = _numeric_grad(lambda q: float(host(loss.value(dev(q), yd))), p.copy())
    np.testing.assert_allclose(host(loss.grad(dev(p), yd)), num, rtol=1e-6, atol=1e-9)


# -- per-pixel cross-entropy ------------------------------------------------------------------------------
def test_sparse_crossentropy_per_pixel_hand_computed_and_ignored_pixels():
    p = np.array([[[[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], [[0.25, 0.5, 0.25], [0.6, 0.3, 0.1]]]])  # (1, 2, 2, 3)
    y = np.array([[[0, 2], [1, 1]]])
    expected = -(np.log(0.7) + np.log(0.8) + np.log(0.5) + np.log(0.3)) / 4
    assert _value(losses.get("sparse_categorical_crossentropy"), p, y) == pytest.approx(expected, rel=1e-12)
    yi = np.array([[[0, 2], [255, 1]]])  # the 255 pixel is left out of the mean (Keras's ignore_class)
    kept = -(np.log(0.7) + np.log(0.8) + np.log(0.3)) / 3
    assert _value(losses.get("sparse_categorical_crossentropy", ignore_class=255), p, yi) == pytest.approx(kept)


@pytest.mark.parametrize("from_logits", [False, True])
def test_sparse_crossentropy_with_ignore_gradient_matches_finite_differences(from_logits):
    loss = losses.get("sparse_categorical_crossentropy", ignore_class=-1, from_logits=from_logits)
    z = RNG.normal(size=(2, 3, 3, 4))
    p = z if from_logits else _softmax(z)
    y = RNG.integers(0, 4, size=(2, 3, 3))
    y[1, 2] = -1
    yd = dev(y)
    num = _numeric_grad(lambda q: float(host(loss.value(dev(q), yd))), p.copy())
    np.testing.assert_allclose(host(loss.grad(dev(p), yd)), num, rtol=1e-6, atol=1e-9)
    # the fused (logits) form agrees with the composition
    fused = losses.get("sparse_categorical_crossentropy", ignore_class=-1)
    v, g = host(fused.fused_value_grad(dev(z), yd, "softmax"))
    assert v == pytest.approx(_value(fused, _softmax(z), y), rel=1e-10)
    np.testing.assert_allclose(
        g,
        _numeric_grad(lambda q: float(host(fused.fused_value_grad(dev(q), yd, "softmax")[0])), z.copy()),
        rtol=1e-6,
        atol=1e-9,
    )


@pytest.mark.torch
@pytest.mark.parametrize("ignore", [None, 255])
def test_sparse_crossentropy_matches_torch_on_nchw(ignore):
    torch = pytest.importorskip("torch")
    z = RNG.normal(size=(2, 5, 6, 4))  # NHWC logits
    y = RNG.integers(0, 4, size=(2, 5, 6))
    if ignore is not None:
        y[0, :2] = ignore
    ref = torch.nn.functional.cross_entropy(
        torch.tensor(z).permute(0, 3, 1, 2), torch.tensor(y), ignore_index=-100 if ignore is None else ignore
    )
    loss = losses.get("sparse_categorical_crossentropy", from_logits=True, ignore_class=ignore)
    assert _value(loss, z, y) == pytest.approx(float(ref), rel=1e-10)
    probs = losses.get("sparse_categorical_crossentropy", ignore_class=ignore)
    assert _value(probs, _softmax(z), y) == pytest.approx(float(ref), rel=1e-8)


def test_dice_needs_a_softmax_output():
    last = {"type": "Conv2D", "name": "out", "filters": 3, "kernel_size": 1, "activation": "sigmoid"}
    assert any("dice needs class probabilities" in p for p in losses.check_output("dice", last))
    assert losses.check_output("dice", dict(last, activation="softmax")) == []


# -- mean IoU and pixel accuracy ---------------------------------------------------------------------------
def test_mean_iou_and_pixel_accuracy_hand_computed_confusion():
    true = np.array([[[0, 0, 1], [1, 2, 2]]])  # (1, 2, 3), 3 classes
    pred = np.array([[[0, 1, 1], [1, 2, 0]]])
    p = np.eye(3)[pred] * 0.8 + 0.1  # argmax = pred
    # confusion (rows true, cols pred): [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    # IoU_0 = 1 / (2 + 2 - 1) = 1/3, IoU_1 = 2 / (2 + 3 - 2) = 2/3, IoU_2 = 1 / (2 + 1 - 1) = 1/2
    got = metrics.compute(["mean_iou", "pixel_accuracy"], dev(p), dev(true), "sparse", 3)
    assert got["mean_iou"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert got["pixel_accuracy"] == pytest.approx(4 / 6)
    # pixels whose truth is not a class (an ignore_class, 255) are left out of both
    true_i = np.array([[[0, 0, 1], [1, 255, 255]]])
    got = metrics.compute(["mean_iou", "pixel_accuracy"], dev(p), dev(true_i), "sparse", 3)
    # kept: true [0, 0, 1, 1], pred [0, 1, 1, 1]: IoU_0 = 1/2, IoU_1 = 2/3, class 2 absent everywhere
    assert got["mean_iou"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert got["pixel_accuracy"] == pytest.approx(3 / 4)


# -- augmentation: masks stay aligned with their images ---------------------------------------------------
def _coordinate_batch(n=6, h=12, w=10):
    """Images whose two channels are each pixel's row and column, and masks holding each pixel's id row * w + col:
    after any joint transform, a pixel's mask id must be the id of the (rounded) coordinates its image holds."""
    rows, cols = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    x = np.broadcast_to(np.stack([rows, cols], axis=-1), (n, h, w, 2)).copy()
    y = np.broadcast_to((rows * w + cols).astype(np.int64), (n, h, w)).copy()
    return x, y


@pytest.mark.parametrize(
    "cfg",
    [
        {"flip": "both"},
        {"width_shift": 0.3, "height_shift": 0.3},
        {"rotation": 40, "zoom": 0.2, "flip": "horizontal"},
        {"shear": 20, "width_shift": 0.2},
        {"crop_padding": 3, "flip": "vertical"},
    ],
)
def test_masks_follow_their_images_under_flip_shift_and_rotation(cfg):
    x, y = _coordinate_batch()
    aug = A.build_augmenter(cfg, "segmentation", x.shape[1:])
    xa, ya = aug.pair(x, y, np.random.default_rng(3))
    w = x.shape[2]
    np.testing.assert_array_equal(ya, np.rint(xa[..., 0]).astype(np.int64) * w + np.rint(xa[..., 1]).astype(np.int64))
    assert not np.array_equal(ya, y)  # something moved
    # the images get the very transform the image-only augmenter draws for the same seed
    np.testing.assert_allclose(xa, aug(x, np.random.default_rng(3)))
    assert ya.dtype == y.dtype and np.array_equal(x, _coordinate_batch()[0])  # inputs untouched


def test_photometric_steps_leave_masks_alone_and_flip_matches_numpy():
    x, y = _coordinate_batch(n=4)
    aug = A.build_augmenter({"brightness": 0.3, "contrast": 0.2, "noise": 0.1}, "segmentation", x.shape[1:])
    xa, ya = aug.pair(x, y, np.random.default_rng(0))
    assert np.array_equal(ya, y) and not np.allclose(xa, x)
    # the kernels: a horizontal flip reverses the columns of both
    flip = np.array([True, False, True, False])
    np.testing.assert_array_equal(
        A.flip_images(y[..., None], flip)[..., 0], np.where(flip[:, None, None], y[:, :, ::-1], y)
    )
    # integer shifts move whole pixels: the nearest-neighbour mask equals the shifted mask exactly
    m = A.affine_masks(y, np.zeros(4), np.array([[2.0, -3.0]] * 4), np.ones(4), fill_mode="constant", fill=0)
    ref = np.zeros_like(y)
    ref[:, 2:, :-3] = y[:, :-2, 3:]
    np.testing.assert_array_equal(m, ref)


def test_the_trainer_hands_the_loss_aligned_batches(tmp_path, monkeypatch):
    from nnctl import run
    from nnctl import spec as spec_mod
    from nnctl import train as T

    root = _folder(tmp_path / "train", n=8)
    seen = []
    real = T.Trainer.loss_and_grad

    def spy(self, xb, yb, *a, **kw):
        seen.append((np.array(host(xb)), np.array(host(yb))))
        return real(self, xb, yb, *a, **kw)

    monkeypatch.setattr(T.Trainer, "loss_and_grad", spy)
    raw = _spec(root, None, augment={"flip": "horizontal", "width_shift": 0.25})
    raw["train"]["epochs"] = 2
    run.train(spec_mod.validate(raw, base_dir=tmp_path))
    assert seen
    for xb, yb in seen:  # the images are 60 * class: the augmented image still reads its mask's class
        level = xb[..., 0] * 255 / 60
        whole = np.abs(level - np.rint(level)) < 1e-4  # not a bilinear blend across a class boundary
        assert whole.mean() > 0.8
        np.testing.assert_array_equal(np.rint(level)[whole], yb[whole])


def test_training_metrics_compare_outputs_with_the_moved_masks(tmp_path, monkeypatch):
    from nnctl import run
    from nnctl import spec as spec_mod
    from nnctl import train as T

    root = _folder(tmp_path / "train", n=10)
    seen = []
    real = T.Trainer.loss_and_grad

    def spy(self, xb, yb, *a, **kw):
        value, out = real(self, xb, yb, *a, **kw)
        seen.append((np.array(host(out)).argmax(axis=-1), np.array(host(yb))))
        return value, out

    monkeypatch.setattr(T.Trainer, "loss_and_grad", spy)
    raw = _spec(root, None, augment={"flip": "both"})
    raw["train"]["epochs"] = 1
    events = []
    run.train(spec_mod.validate(raw, base_dir=tmp_path), emit=events.append)
    pred = np.concatenate([p for p, _ in seen])
    true = np.concatenate([t for _, t in seen])
    logged = [e for e in events if e.get("event") == "epoch"][0]
    assert logged["pixel_accuracy"] == pytest.approx(float((pred == true).mean()), abs=1e-9)


# -- mask folders -----------------------------------------------------------------------------------------
def _folder(root, n=12, size=16, k=3, seed=0):
    """A segmentation folder of ``n`` grayscale images whose pixels are 60 * their class (blocks of classes)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        m = np.zeros((size, size), np.uint8)
        for _ in range(2):
            c = int(rng.integers(1, k))
            r0, c0 = rng.integers(0, size // 2, 2)
            m[r0 : r0 + size // 2, c0 : c0 + size // 2] = c
        Image.fromarray(m * 60, mode="L").save(root / "images" / f"s{i:02d}.png")
        Image.fromarray(m, mode="L").save(root / "masks" / f"s{i:02d}.png")
    return root


def _spec(train, test, augment=None, k=3, size=16, loss="sparse_categorical_crossentropy", metrics_=None):
    layers = [
        {"type": "Conv2D", "name": "e1", "filters": 4, "kernel_size": 3, "padding": "same", "activation": "relu"},
        {"type": "MaxPooling2D", "name": "p1", "pool_size": 2},
        {"type": "Conv2D", "name": "m", "filters": 8, "kernel_size": 3, "padding": "same", "activation": "relu"},
        {"type": "UpSampling2D", "name": "up", "size": 2},
        {"type": "Concatenate", "name": "skip", "inputs": ["up", "e1"]},
        {"type": "Conv2D", "name": "out", "filters": k, "kernel_size": 1, "activation": "softmax"},
    ]
    data = {"kind": "segmentation", "train": str(train), "rescale": "1/255"}
    if test is not None:
        data["test"] = str(test)
    if augment:
        data["augment"] = augment
    return {
        "name": "seg",
        "seed": 0,
        "data": data,
        "model": {"input_shape": [size, size, 1], "layers": layers},
        "train": {
            "loss": loss,
            "optimizer": {"type": "adam", "learning_rate": 0.01},
            "epochs": 3,
            "batch_size": 4,
            "metrics": metrics_ or ["mean_iou", "pixel_accuracy"],
        },
        "output": {"checkpoint": str(train.parent / "seg.h5")},
    }


def _write_spec(tmp_path, raw) -> str:
    from nnctl.toml_write import dump as dumps

    path = tmp_path / "seg.toml"
    path.write_text(dumps(raw))
    return str(path)


def _cli(*args):
    from nnctl.cli.main import app

    return CliRunner().invoke(app, [str(a) for a in args])


def _one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for f in fragments:
        assert f in lines[0], lines[0]


def test_missing_mask_is_one_line_naming_the_file(tmp_path):
    root = _folder(tmp_path / "train")
    (root / "masks" / "s03.png").unlink()
    _one_line_error(_cli("train", _write_spec(tmp_path, _spec(root, None))), "s03.png", "missing mask")


def test_mask_size_mismatch_is_one_line_naming_the_file(tmp_path):
    from PIL import Image

    root = _folder(tmp_path / "train")
    Image.fromarray(np.zeros((15, 16), np.uint8), mode="L").save(root / "masks" / "s05.png")
    _one_line_error(_cli("train", _write_spec(tmp_path, _spec(root, None))), "s05.png", "15x16", "16x16")


def test_mask_value_out_of_class_range_is_one_line_naming_the_file(tmp_path):
    from PIL import Image

    root = _folder(tmp_path / "train")
    m = np.zeros((16, 16), np.uint8)
    m[3, 4] = 7
    Image.fromarray(m, mode="L").save(root / "masks" / "s07.png")
    _one_line_error(_cli("train", _write_spec(tmp_path, _spec(root, None))), "s07.png", "mask value 7", "0-2")
    # an RGB mask is not a mask of class ids
    Image.fromarray(np.zeros((16, 16, 3), np.uint8), mode="RGB").save(root / "masks" / "s07.png")
    _one_line_error(_cli("train", _write_spec(tmp_path, _spec(root, None))), "s07.png", "RGB")


def test_dice_trains_from_the_cli_and_lowers_its_loss(tmp_path):
    root = _folder(tmp_path / "train", n=16)
    raw = _spec(root, None, loss={"type": "dice", "smooth": 1.0})
    raw["train"]["epochs"] = 6
    r = _cli("train", _write_spec(tmp_path, raw), "--json")
    assert r.exit_code == 0, r.output
    epochs = [json.loads(line) for line in r.stdout.splitlines() if '"epoch"' in line and '"loss"' in line]
    assert epochs[-1]["loss"] < epochs[0]["loss"]


def test_a_loss_that_does_not_take_class_ids_is_refused(tmp_path):
    root = _folder(tmp_path / "train")
    _one_line_error(
        _cli("train", _write_spec(tmp_path, _spec(root, None, loss="categorical_crossentropy"))),
        "train.loss",
        "sparse_categorical_crossentropy or dice",
    )


def test_ignore_class_values_are_allowed_and_left_out(tmp_path):
    from PIL import Image

    root = _folder(tmp_path / "train")
    m = np.asarray(Image.open(root / "masks" / "s01.png")).copy()
    m[:2] = 255
    Image.fromarray(m, mode="L").save(root / "masks" / "s01.png")
    raw = _spec(root, None, loss={"type": "sparse_categorical_crossentropy", "ignore_class": 255})
    raw["train"]["epochs"] = 1
    r = _cli("train", _write_spec(tmp_path, raw), "--quiet")
    assert r.exit_code == 0, r.output
    r = _cli("evaluate", tmp_path / "seg.h5", "--data", root, "--json")
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)  # the 2 x 16 ignored pixels are in no class of the confusion counts
    assert sum(map(sum, result["confusion"]["counts"])) == 12 * 16 * 16 - 32


def test_npz_masks_train_and_out_of_range_values_name_the_sample(tmp_path):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, size=(10, 16, 16)).astype(np.uint8)
    x = (y * 60).astype(np.uint8)
    np.savez(tmp_path / "seg.npz", x=x, y=y)
    raw = _spec(tmp_path / "seg.npz", None)
    raw["train"]["epochs"] = 1
    r = _cli("train", _write_spec(tmp_path, raw), "--quiet")
    assert r.exit_code == 0, r.output
    y[4, 0, 0] = 9
    np.savez(tmp_path / "seg.npz", x=x, y=y)
    _one_line_error(_cli("train", _write_spec(tmp_path, raw), "--force"), "seg.npz (sample 4)", "mask value 9")


# -- the CLI end to end -------------------------------------------------------------------------------------
def test_cli_train_evaluate_predict_writes_png_masks(tmp_path):
    from PIL import Image

    train = _folder(tmp_path / "train", n=24)
    test = _folder(tmp_path / "test", n=6, seed=1)
    raw = _spec(train, test, augment={"flip": "horizontal"})
    raw["train"]["epochs"] = 4
    spec_path = _write_spec(tmp_path, raw)
    r = _cli("train", spec_path, "--quiet")
    assert r.exit_code == 0, r.output
    ckpt = tmp_path / "seg.h5"
    r = _cli("evaluate", ckpt, "--json")
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["samples"] == 6 and 0 <= result["mean_iou"] <= 1 and 0 <= result["pixel_accuracy"] <= 1
    # evaluate on another folder with a mask value outside the model's classes: one line naming the file
    bad = _folder(tmp_path / "bad", n=3, seed=2)
    m = np.zeros((16, 16), np.uint8)
    m[0, 0] = 5
    Image.fromarray(m, mode="L").save(bad / "masks" / "s02.png")
    _one_line_error(_cli("evaluate", ckpt, "--data", bad), "s02.png", "mask value 5")
    # predict: the split folder (its images/) into masks/, one PNG per input with the same file name
    out = tmp_path / "masks"
    r = _cli("predict", ckpt, test, "--output", f"{out}/")
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(p.name for p in (test / "images").iterdir())
    from nnctl import run

    restored = run.restore(str(ckpt), "cpu")
    imgs = np.stack([np.asarray(Image.open(test / "images" / n)) for n in names])
    _, decoded = run.predict(restored, imgs[..., None])
    for i, n in enumerate(names):
        with Image.open(out / n) as im:
            assert im.mode == "L" and im.size == (16, 16)
            got = np.asarray(im)
        np.testing.assert_array_equal(got, decoded[i])  # the argmax class of every pixel
        assert got.max() < 3


# -- the shipped spec ---------------------------------------------------------------------------------------
def test_shipped_unet_spec_trains_on_a_subset(tmp_path):
    from helpers import train_spec

    s, done = train_spec("unet_shapes.toml", tmp_path, "data.subset=48", "train.epochs=1")
    assert done["epochs_run"] == 1
    r = _cli("evaluate", s.output.checkpoint, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["samples"] == 200
