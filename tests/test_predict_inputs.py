"""predict and evaluate take every input kind training reads: image files and folders, IDX, arrays with or
without the channel axis, and already-scaled inputs with --preprocessed."""

import gzip
import json
import struct

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from nnctl.cli.main import app

runner = CliRunner()
CLASSES = ["a", "b", "c"]
PER_CLASS = 12


def _images(seed=0):
    """uint8 (N, 8, 8) images, class k brighter in its own band of rows, and their class indices."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 90, size=(len(CLASSES) * PER_CLASS, 8, 8), dtype=np.uint8)
    y = np.repeat(np.arange(len(CLASSES)), PER_CLASS)
    for i, k in enumerate(y):
        x[i, 3 * k : 3 * k + 2] += 150
    return x, y


def _write_idx(path, arr):
    dims = struct.pack(f">{arr.ndim}I", *arr.shape)
    path.write_bytes(gzip.compress(bytes([0, 0, 0x08, arr.ndim]) + dims + arr.astype(np.uint8).tobytes()))


def _write_folder(root, x, y):
    for i, (img, k) in enumerate(zip(x, y)):
        (root / CLASSES[k]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img, mode="L").save(root / CLASSES[k] / f"img{i:03d}.png")


SPEC = """
name = "tiny"
seed = 0
[data]
train = "{train}"
rescale = "1/255"
normalize = "{normalize}"
[[model.layers]]
type = "Flatten"
[[model.layers]]
type = "Dense"
units = 3
activation = "softmax"
[train]
loss = "{loss}"
optimizer = {{ type = "adam", learning_rate = 0.05 }}
metrics = ["accuracy"]
epochs = 1
batch_size = 8
[output]
checkpoint = "{ckpt}"
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    x, y = _images()
    _write_folder(root / "folder", x, y)
    _write_idx(root / "train-images-idx3-ubyte.gz", x)
    _write_idx(root / "train-labels-idx1-ubyte.gz", y)
    np.save(root / "raw.npy", x)  # (N, 8, 8): no channel axis
    return root, x, y


def _train(root, train, name, normalize="none", loss="categorical_crossentropy"):
    spec = root / f"{name}.toml"
    ckpt = root / f"{name}.h5"
    spec.write_text(SPEC.format(train=train, ckpt=ckpt, normalize=normalize, loss=loss))
    r = runner.invoke(app, ["train", str(spec), "--quiet"])
    assert r.exit_code == 0, r.output
    return ckpt


def _predict(ckpt, *args):
    r = runner.invoke(app, ["predict", str(ckpt), *map(str, args), "--format", "jsonl"])
    assert r.exit_code == 0, r.output
    return [json.loads(line) for line in r.stdout.splitlines()]


@pytest.mark.parametrize("trained_on", ["folder", "idx"])
def test_every_input_kind_gives_the_classes_of_the_training_kind(data, trained_on):
    root, x, y = data
    train = root / "folder" if trained_on == "folder" else root / "train-images-idx3-ubyte.gz"
    ckpt = _train(root, train, f"m_{trained_on}")
    reference = _predict(ckpt, train if trained_on == "idx" else root / "raw.npy")
    labels = [str(r["prediction"]) for r in reference]
    assert len(labels) == len(x)
    # the folder, in sorted order: a/img000.png ... c/img035.png, the same order as x
    from_folder = _predict(ckpt, root / "folder")
    assert [r["file"] for r in from_folder] == [
        str(root / "folder" / CLASSES[k] / f"img{i:03d}.png") for i, k in enumerate(y)
    ]
    assert [str(r["prediction"]) for r in from_folder] == labels
    assert [str(r["prediction"]) for r in _predict(ckpt, root / "train-images-idx3-ubyte.gz")] == labels
    assert [str(r["prediction"]) for r in _predict(ckpt, root / "raw.npy")] == labels
    one = _predict(ckpt, root / "folder" / "b" / f"img{PER_CLASS:03d}.png")
    assert len(one) == 1 and str(one[0]["prediction"]) == labels[PER_CLASS]
    png = (root / "folder" / "b" / f"img{PER_CLASS:03d}.png").read_bytes()
    r = runner.invoke(app, ["predict", str(ckpt), "-", "--format", "jsonl"], input=png)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == {"file": "stdin", "prediction": one[0]["prediction"]}


def test_folder_trained_model_evaluates_on_arrays_and_refuses_unknown_labels(data):
    root, x, y = data
    ckpt = _train(root, root / "folder", "m_eval")
    np.savez(root / "labelled.npz", x=x, y=np.array(CLASSES)[y])
    results = []
    for source in (root / "folder", root / "labelled.npz"):
        r = runner.invoke(app, ["evaluate", str(ckpt), "--data", str(source), "--json"])
        assert r.exit_code == 0, r.output
        results.append(json.loads(r.stdout))
    folder, arrays = results
    assert folder["samples"] == arrays["samples"] == len(x)
    assert folder["loss"] == pytest.approx(arrays["loss"], rel=1e-6)
    # IDX labels 0, 1, 2 are not the class names "a", "b", "c": an error naming the label, not a guess
    r = runner.invoke(app, ["evaluate", str(ckpt), "--data", str(root / "train-images-idx3-ubyte.gz")])
    assert r.exit_code == 2 and "label '0' was not seen in training" in r.output


def test_idx_labels_evaluate_an_idx_trained_model_on_a_folder_of_digit_names(tmp_path):
    x, y = _images(1)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", x)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", y)
    for i, (img, k) in enumerate(zip(x, y)):  # folders named "0", "1", "2": the IDX labels as text
        (tmp_path / "digits" / str(k)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img, mode="L").save(tmp_path / "digits" / str(k) / f"{i:03d}.png")
    ckpt = _train(tmp_path, tmp_path / "train-images-idx3-ubyte.gz", "m")
    got = []
    for source in (tmp_path / "digits", tmp_path / "train-images-idx3-ubyte.gz"):
        r = runner.invoke(app, ["evaluate", str(ckpt), "--data", str(source), "--json"])
        assert r.exit_code == 0, r.output
        got.append(json.loads(r.stdout))
    assert got[0]["loss"] == pytest.approx(got[1]["loss"], rel=1e-6)
    assert got[0]["accuracy"] == got[1]["accuracy"]


@pytest.mark.parametrize("normalize", ["none", "standard"])
def test_preprocessed_inputs_with_the_flag_equal_raw_inputs_without_it(data, normalize):
    root, x, y = data
    ckpt = _train(root, root / "folder", f"m_pre_{normalize}", normalize=normalize)
    scaled = x.astype(np.float64) / 255  # the spec's rescale, by hand
    if normalize == "standard":  # over every training pixel: one channel
        scaled = (scaled - scaled.mean()) / scaled.std()
    np.save(root / f"scaled_{normalize}.npy", scaled[..., None].astype(np.float32))
    r_raw = runner.invoke(app, ["predict", str(ckpt), str(root / "raw.npy"), "--proba"])
    r_pre = runner.invoke(
        app, ["predict", str(ckpt), str(root / f"scaled_{normalize}.npy"), "--proba", "--preprocessed"]
    )
    r_twice = runner.invoke(app, ["predict", str(ckpt), str(root / f"scaled_{normalize}.npy"), "--proba"])
    assert r_raw.exit_code == r_pre.exit_code == r_twice.exit_code == 0, r_raw.output + r_pre.output
    raw = np.loadtxt(r_raw.stdout.splitlines()[1:], delimiter=",", usecols=(1, 2, 3))
    pre = np.loadtxt(r_pre.stdout.splitlines()[1:], delimiter=",", usecols=(1, 2, 3))
    twice = np.loadtxt(r_twice.stdout.splitlines()[1:], delimiter=",", usecols=(1, 2, 3))
    np.testing.assert_allclose(pre, raw, atol=2e-5)
    assert np.abs(twice - raw).max() > 1e-3  # scaling twice is not the same: the flag matters


def test_top_k_lists_classes_by_probability(data):
    root, x, _ = data
    ckpt = _train(root, root / "folder", "m_top")
    rows = _predict(ckpt, root / "raw.npy", "--top-k", "2", "--proba")
    for row in rows:
        probs = {c: row[f"proba_{c}"] for c in CLASSES}
        ranked = sorted(CLASSES, key=lambda c: -probs[c])
        assert [row["top1"], row["top2"]] == ranked[:2] and row["top1"] == row["prediction"]
        assert row["top1_proba"] == pytest.approx(probs[ranked[0]]) and row["top1_proba"] >= row["top2_proba"]
    r = runner.invoke(app, ["predict", str(ckpt), str(root / "raw.npy"), "--top-k", "4"])
    assert r.exit_code == 2 and "--top-k" in r.output


def test_proba_on_a_regression_is_an_error(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    lines = ["a,b,c,price"] + [f"{a},{b},{c},{a + 2 * b - c}" for a, b, c in x]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    spec = tmp_path / "r.toml"
    spec.write_text(
        f'name = "r"\nseed = 0\n[data]\ntrain = "{tmp_path / "t.csv"}"\ntarget = "price"\n'
        '[[model.layers]]\ntype = "Dense"\nunits = 1\n[train]\nloss = "mse"\nepochs = 1\n'
        f'[output]\ncheckpoint = "{tmp_path / "r.h5"}"\n'
    )
    assert runner.invoke(app, ["train", str(spec), "--quiet"]).exit_code == 0
    r = runner.invoke(app, ["predict", str(tmp_path / "r.h5"), str(tmp_path / "t.csv"), "--proba"])
    assert r.exit_code == 2 and "regression" in r.output
    r = runner.invoke(app, ["predict", str(tmp_path / "r.h5"), str(tmp_path / "t.csv")])
    assert r.exit_code == 0 and r.stdout.splitlines()[0] == "price"  # named after the target, not y0


@pytest.mark.parametrize("validation", ["idx", "npz", "folder"])
def test_validation_file_of_any_array_kind_gives_val_metrics(data, validation):
    root, x, y = data
    val = {"idx": root / "train-images-idx3-ubyte.gz", "npz": root / "val.npz", "folder": root / "folder"}[validation]
    np.savez(root / "val.npz", x=x, y=y)  # (N, 8, 8) and integer labels, as the IDX files hold them
    spec = root / f"v_{validation}.toml"
    spec.write_text(
        SPEC.format(
            train=root / "train-images-idx3-ubyte.gz",
            ckpt=root / f"v_{validation}.h5",
            normalize="none",
            loss="categorical_crossentropy",
        ).replace('normalize = "none"', f'normalize = "none"\nvalidation = "{val}"')
    )
    r = runner.invoke(app, ["train", str(spec), "--json"])
    if validation == "folder":  # folder names "a", "b", "c" are not the IDX labels 0, 1, 2
        assert r.exit_code == 2 and "label 'a' was not seen in training" in r.output
        return
    assert r.exit_code == 0, r.output
    epoch = json.loads(r.stdout.splitlines()[0])
    # the validation set holds the training samples: its loss is evaluate's on them with the epoch's weights
    r = runner.invoke(
        app,
        ["evaluate", str(root / f"v_{validation}.h5"), "--data", str(root / "train-images-idx3-ubyte.gz"), "--json"],
    )
    assert r.exit_code == 0, r.output
    evaluated = json.loads(r.stdout)
    assert epoch["val_loss"] == pytest.approx(evaluated["loss"], rel=1e-5)
    assert epoch["val_accuracy"] == pytest.approx(evaluated["accuracy"])
