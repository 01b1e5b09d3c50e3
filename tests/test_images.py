"""Image folders through ``load_dataset`` (shapes, labels, colour modes, resizing, errors naming the file) and
the ``augment-preview`` verb writing a valid PNG."""

import numpy as np
import pytest

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

from nnctl import spec as spec_mod  # noqa: E402
from nnctl.data import load_dataset  # noqa: E402
from nnctl.errors import DataError  # noqa: E402

LAYERS = [{"type": "Flatten"}, {"type": "Dense", "units": 2, "activation": "softmax"}]


def make_folder(root, mode="RGB", per_class=3, size=(12, 12), classes=("dog", "cat"), seed=0):
    """``root/<class>/img_k.png``: class 'cat' bright, 'dog' dark, so labels can be checked from pixels."""
    r = np.random.default_rng(seed)
    channels = 3 if mode == "RGB" else 1
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        base = 200 if c == "cat" else 30
        for k in range(per_class):
            pixels = np.clip(base + r.integers(-20, 21, (size[1], size[0], channels)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode).save(root / c / f"img_{k}.png")
    return root


def dataset(tmp_path, **data):
    raw = {
        "data": {"train": "train", **data},
        "model": {"layers": LAYERS},
        "train": {"loss": "sparse_categorical_crossentropy"},
    }
    return load_dataset(spec_mod.validate(raw, base_dir=tmp_path))


def test_rgb_folder_shapes_labels_and_order(tmp_path):
    make_folder(tmp_path / "train")
    ds = dataset(tmp_path)
    assert ds.x_train.shape == (6, 12, 12, 3) and ds.x_train.dtype == np.float32
    assert list(ds.prep.classes) == ["cat", "dog"]  # class labels are the sorted folder names
    assert list(ds.y_train) == [0, 0, 0, 1, 1, 1]  # files in sorted order, class by class
    assert np.all(ds.x_train[:3] > 150) and np.all(ds.x_train[3:] < 80)  # the pixels belong to their labels
    with Image.open(tmp_path / "train" / "cat" / "img_0.png") as im:
        assert np.array_equal(ds.x_train[0], np.asarray(im))
    with Image.open(tmp_path / "train" / "dog" / "img_2.png") as im:
        assert np.array_equal(ds.x_train[5], np.asarray(im))
    assert ds.prep.kind == "images" and ds.prep.meta["color_mode"] == "rgb"
    again = dataset(tmp_path)
    assert np.array_equal(ds.x_train, again.x_train)


def test_grayscale_auto_and_forced_modes(tmp_path):
    make_folder(tmp_path / "train", mode="L")
    assert dataset(tmp_path).x_train.shape == (6, 12, 12, 1)
    assert dataset(tmp_path, color_mode="rgb").x_train.shape == (6, 12, 12, 3)
    # one colour image makes auto pick rgb for every image
    Image.fromarray(np.full((12, 12, 3), 90, np.uint8), "RGB").save(tmp_path / "train" / "cat" / "img_9.png")
    assert dataset(tmp_path).x_train.shape == (7, 12, 12, 3)
    ds = dataset(tmp_path, color_mode="grayscale")
    assert ds.x_train.shape == (7, 12, 12, 1) and ds.prep.meta["color_mode"] == "grayscale"


def test_test_and_validation_folders_rescale_and_split(tmp_path):
    make_folder(tmp_path / "train", per_class=5)
    make_folder(tmp_path / "test", per_class=2, seed=1)
    make_folder(tmp_path / "val", per_class=1, seed=2)
    ds = dataset(tmp_path, test="test", validation="val", rescale="1/255")
    assert ds.x_test.shape == (4, 12, 12, 3) and ds.x_val.shape == (2, 12, 12, 3)
    assert list(ds.y_test) == [0, 0, 1, 1] and 0 <= ds.x_train.min() and ds.x_train.max() <= 1
    assert dataset(tmp_path, validation={"path": "val"}).x_val.shape == (2, 12, 12, 3)
    ds = dataset(tmp_path, validation={"split": 0.2, "stratify": True})
    assert len(ds.x_train) == 8 and len(ds.x_val) == 2 and sorted(ds.y_val) == [0, 1]


def test_image_size_resizes_and_mismatch_names_the_file(tmp_path):
    make_folder(tmp_path / "train")
    Image.fromarray(np.zeros((20, 16, 3), np.uint8), "RGB").save(tmp_path / "train" / "dog" / "big.png")
    with pytest.raises(DataError, match=r"dog/big\.png: image is 20x16 .* 12x12; set data\.image_size"):
        dataset(tmp_path)
    ds = dataset(tmp_path, image_size=[8, 10])
    assert ds.x_train.shape == (7, 8, 10, 3)
    with pytest.raises(DataError, match=r"data\.image_size: expected \[height, width\]"):
        dataset(tmp_path, image_size=[8])


def test_corrupt_and_non_image_files_are_named(tmp_path):
    make_folder(tmp_path / "train")
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match=r"cat/notes\.txt: not a readable image"):
        dataset(tmp_path)
    (tmp_path / "train" / "cat" / "notes.txt").unlink()
    good = (tmp_path / "train" / "cat" / "img_0.png").read_bytes()
    (tmp_path / "train" / "cat" / "img_1.png").write_bytes(good[:60])  # a truncated PNG
    with pytest.raises(DataError, match=r"cat/img_1\.png: not a readable image"):
        dataset(tmp_path)


def test_folder_layout_errors(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match="expected one subfolder per class, found none"):
        dataset(tmp_path)
    make_folder(tmp_path / "train")
    make_folder(tmp_path / "test", classes=("cat", "bird"))
    with pytest.raises(DataError, match=r"test/bird: class 'bird' of the test folder is not a training class"):
        dataset(tmp_path, test="test")


def test_missing_pillow_is_a_clear_data_error(tmp_path, monkeypatch):
    import sys

    make_folder(tmp_path / "train")
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(DataError, match=r"Pillow, a core dependency: reinstall nnctl, or pip install Pillow"):
        dataset(tmp_path)


# -- augment-preview -----------------------------------------------------------------------------------
def _app():
    from nnctl.cli.main import app, reports_errors

    if not any(c.name == "augment-preview" for c in app.registered_commands):
        from nnctl.cli import augment_preview

        augment_preview.register(app, reports_errors)
    return app


def test_augment_preview_writes_a_png_grid(tmp_path):
    from typer.testing import CliRunner

    make_folder(tmp_path / "train", per_class=4)
    (tmp_path / "spec.toml").write_text(
        '[data]\ntrain = "train"\nnormalize = "standard"\naugment = {flip = "horizontal", rotation = 15}\n'
        '[model]\nlayers = [{type = "Flatten"}, {type = "Dense", units = 2, activation = "softmax"}]\n'
        '[train]\nloss = "sparse_categorical_crossentropy"\n'
    )
    out = tmp_path / "grid.png"
    result = CliRunner().invoke(
        _app(),
        [
            "augment-preview",
            str(tmp_path / "spec.toml"),
            "--output",
            str(out),
            "--samples",
            "5",
            "--scale",
            "2",
            "--set",
            "data.augment.zoom=0.1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "flip, affine" in result.output
    with Image.open(out) as im:
        assert im.format == "PNG" and im.mode == "RGB"
        # 5 columns and 1 + 3 rows of 24 px tiles with 2 px gaps
        assert im.size == (5 * 24 + 4 * 2, 4 * 24 + 3 * 2)
        grid = np.asarray(im)
    first, second = grid[:24, :24], grid[26:50, :24]
    assert first.min() == 0 and first.max() == 255  # each tile is min-max scaled for display
    assert not np.array_equal(first, second)


def test_augment_preview_without_augment_is_an_error(tmp_path):
    from typer.testing import CliRunner

    make_folder(tmp_path / "train")
    (tmp_path / "spec.toml").write_text(
        '[data]\ntrain = "train"\n[model]\nlayers = [{type = "Flatten"}, {type = "Dense", units = 2}]\n'
    )
    result = CliRunner().invoke(_app(), ["augment-preview", str(tmp_path / "spec.toml"), "-o", str(tmp_path / "g.png")])
    assert result.exit_code == 2 and "data.augment is empty" in result.output
