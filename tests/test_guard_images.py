"""Image folders decoded per batch (``data.stream = "batches"``, or ``auto`` above ``stream_above_mb``): the
weights of the same images in memory, each image decoded once per epoch with the next batch decoded by a
background thread, and a peak RSS far below the in-memory run's."""

import pathlib
import threading

import h5py
import numpy as np
import pytest
from child_rss import run_measured

from helpers import checkpoint_arrays

Image = pytest.importorskip("PIL.Image")


def nnctl(*args, cwd=None):
    return run_measured(*args, cwd=cwd)


def folder(root: pathlib.Path, per_class: int, side: int, classes: int = 3, seed: int = 0) -> pathlib.Path:
    rng = np.random.default_rng(seed)
    for c in range(classes):
        d = root / f"c{c}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            a = rng.integers(0, 80, (side, side, 3)).astype(np.uint8)
            a[c * side // classes : (c + 1) * side // classes, :, c] = 250  # a bright band per class
            Image.fromarray(a).save(d / f"{i:03d}.png", compress_level=1)
    return root


SPEC = """name = "im"
[data]
train = "{train}"
rescale = "1/255"
normalize = "standard"
validation = {{ split = 0.25 }}
stream = "{stream}"
{extra}
[[model.layers]]
type = "{first}"
{first_keys}
[[model.layers]]
type = "Flatten"
[[model.layers]]
type = "Dense"
units = {units}
activation = "softmax"
[train]
loss = "categorical_crossentropy"
epochs = {epochs}
batch_size = 8
[output]
checkpoint = "{out}"
"""


def spec(
    tmp, train, stream, out, epochs=3, extra="", first="Conv2D", first_keys="filters = 4\nkernel_size = 3", units=3
):
    path = tmp / f"{out}.toml"
    path.write_text(
        SPEC.format(
            train=train,
            stream=stream,
            out=tmp / f"{out}.h5",
            epochs=epochs,
            extra=extra,
            first=first,
            first_keys=first_keys,
            units=units,
        )
    )
    return path


def test_streamed_folder_trains_to_the_weights_of_the_same_images_in_memory(tmp_path):
    imgs = folder(tmp_path / "imgs", 20, 12)
    for stream in ("memory", "batches"):
        code, _, err, _ = nnctl("train", spec(tmp_path, imgs, stream, stream), "--quiet")
        assert code == 0, err
    a, b = checkpoint_arrays(tmp_path / "memory.h5"), checkpoint_arrays(tmp_path / "batches.h5")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    with h5py.File(tmp_path / "memory.h5") as fa, h5py.File(tmp_path / "batches.h5") as fb:
        assert np.array_equal(fa["history/val_loss"][()], fb["history/val_loss"][()])
    # evaluate and predict read a streamed spec's folders the same way
    code, out, err, _ = nnctl("evaluate", tmp_path / "batches.h5", "--data", imgs, "--json")
    assert code == 0, err
    code2, out2, err2, _ = nnctl("evaluate", tmp_path / "memory.h5", "--data", imgs, "--json")
    assert code2 == 0 and out == out2.replace("memory.h5", "batches.h5"), (out, out2)


def test_auto_streams_above_the_threshold(tmp_path, monkeypatch):
    from nnctl import spec as spec_mod
    from nnctl.data import load_dataset
    from nnctl.data.images import ImageRows

    imgs = folder(tmp_path / "imgs", 4, 12)  # 12 images of 12x12x3: 5,184 bytes decoded
    s = spec_mod.load(spec(tmp_path, imgs, "auto", "a"))
    assert isinstance(load_dataset(s).x_train, np.ndarray)  # under 1024 MiB: in memory
    s = spec_mod.load(spec(tmp_path, imgs, "auto", "a", extra="stream_above_mb = 0"))
    assert isinstance(load_dataset(s).x_train, ImageRows)


def test_each_batch_is_decoded_once_and_the_next_one_in_the_background(tmp_path, monkeypatch):
    from nnctl.data import images

    imgs = folder(tmp_path / "imgs", 10, 8, classes=2)
    _, files, _ = images.list_folder(imgs)
    decoded: list = []
    real = images._Files.decode

    def counted(self, rows):
        decoded.append((threading.current_thread().name, sorted(int(r) for r in rows)))
        return real(self, rows)

    monkeypatch.setattr(images._Files, "decode", counted)
    rows = images.ImageRows(images._Files(images._pillow(), files, "rgb", (8, 8)))
    order = rows.epoch_order(np.random.default_rng(3))
    assert sorted(order.tolist()) == list(range(20))
    whole = images.read_images(files, "rgb", None)
    for b in range(0, 20, 6):  # batches of 6, 6, 6 and 2, as the trainer takes them
        got = np.take(rows, order[b : b + 6], axis=0)
        np.testing.assert_array_equal(got, whole[order[b : b + 6]])
    first, *rest = decoded
    assert first == ("MainThread", sorted(order[:6].tolist()))  # the first batch: nothing foreseen it
    assert [sorted(order[b : b + 6].tolist()) for b in range(6, 20, 6)] == [r for _, r in rest]
    assert all(name.startswith("nnctl-prefetch") for name, _ in rest)  # decoded ahead, by the prefetch thread
    assert sum(len(r) for _, r in decoded) == 20  # each image once


def test_a_corrupt_image_is_named_when_its_batch_is_read(tmp_path):
    imgs = folder(tmp_path / "imgs", 6, 8, classes=2)
    (imgs / "c1" / "003.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really" * 10)
    code, _, err, _ = nnctl("train", spec(tmp_path, imgs, "batches", "bad", units=2), "--quiet")
    assert code == 2 and err.strip().splitlines() == [err.strip()] and "Traceback" not in err, err
    assert "003.png" in err and "not a readable image" in err


@pytest.mark.slow
def test_streaming_bounds_peak_memory(tmp_path):
    """120 images of 224x224x3: 18 MB decoded, 145 MB as float64 while rescaled in memory; per batch of 8 the
    streamed run holds about 1 MB of pixels at a time (and the prefetched batch)."""
    imgs = folder(tmp_path / "imgs", 60, 224, classes=2)
    peaks = {}
    for stream in ("memory", "batches"):
        path = spec(tmp_path, imgs, stream, stream, epochs=1, first="GlobalAveragePooling2D", first_keys="", units=2)
        text = path.read_text().replace('type = "Flatten"', 'type = "Dropout"\nrate = 0.0')
        path.write_text(text.replace('normalize = "standard"\n', "").replace("validation = { split = 0.25 }\n", ""))
        code, _, err, peaks[stream] = nnctl("train", path, "--quiet")
        assert code == 0, err
    assert peaks["batches"] < 0.6 * peaks["memory"], peaks
