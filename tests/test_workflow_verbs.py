"""Workflow verbs around training: plot, compare, init, schema, TensorBoard events, confusion matrices.

A tiny CSV classifier is trained once per module (a few epochs, well under a second) and every verb
is checked against that run's own history, read independently from the checkpoint.
"""

import csv
import glob
import importlib.util
import json
import math
import pathlib
import struct
import tomllib

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from nnctl import run
from nnctl import spec as spec_mod
from nnctl.checkpoint import Checkpoint
from nnctl.cli import compare as compare_cmd
from nnctl.cli import init_cmd, schema_cmd
from nnctl.cli import plot as plot_cmd
from nnctl.cli.main import app, reports_errors
from nnctl.errors import SpecError

REPO = pathlib.Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# the lead registers these in nnctl/cli/main.py; until then (or if one is missing) register them here
_have = set(typer.main.get_command(app).commands)
for _name, _module in (("plot", plot_cmd), ("compare", compare_cmd), ("init", init_cmd), ("schema", schema_cmd)):
    if _name not in _have:
        _module.register(app, reports_errors)


def cli(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


# -- data and a trained run ---------------------------------------------------------------------
def write_blobs(path, n, seed, labels=("a", "b", "c"), extra_text=False):
    """Separable 2-D blobs, one per label; optionally a text column init must leave out."""
    rng = np.random.default_rng(seed)
    centres = {
        lab: (3 * math.cos(2 * math.pi * i / len(labels)), 3 * math.sin(2 * math.pi * i / len(labels)))
        for i, lab in enumerate(labels)
    }
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["x1", "x2", *(["note"] if extra_text else []), "label"])
        for i in range(n):
            lab = labels[i % len(labels)]
            cx, cy = centres[lab]
            w.writerow(
                [
                    f"{cx + rng.normal(0, 0.7):.4f}",
                    f"{cy + rng.normal(0, 0.7):.4f}",
                    *([f"n{i % 3}"] if extra_text else []),
                    lab,
                ]
            )


def tiny_spec(tmp, name, seed, tensorboard=False, early=False):
    d = {
        "name": name,
        "seed": seed,
        "data": {
            "train": "train.csv",
            "test": "test.csv",
            "target": "label",
            "normalize": "standard",
            "validation": {"split": 0.25, "stratify": True},
        },
        "model": {
            "layers": [
                {"type": "Dense", "units": 8, "activation": "relu"},
                {"type": "Dense", "units": 3, "activation": "softmax"},
            ]
        },
        "train": {
            "loss": "categorical_crossentropy",
            "metrics": ["accuracy"],
            "epochs": 6,
            "batch_size": 16,
            "optimizer": {"type": "adam", "learning_rate": 0.05},
        },
        "output": {"checkpoint": f"runs/{name}.h5"},
    }
    if tensorboard:
        d["train"]["tensorboard"] = f"tb/{name}"
    if early:
        d["train"].update(epochs=12, early_stopping={"monitor": "val_loss", "patience": 2, "restore_best": True})
    return spec_mod.validate(d, base_dir=tmp)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    if importlib.util.find_spec("tensorboardX") is None:  # not importorskip: tensorboardX imports torch if it can
        pytest.skip("needs tensorboardX (pip install nnctl[tensorboard])")
    tmp = tmp_path_factory.mktemp("runs")
    write_blobs(tmp / "train.csv", 120, 0)
    write_blobs(tmp / "test.csv", 30, 1)
    first = run.train(tiny_spec(tmp, "first", 0, tensorboard=True))
    second = run.train(tiny_spec(tmp, "second", 3, early=True))
    return {"tmp": tmp, "first": first, "second": second}


# -- plot ------------------------------------------------------------------------------------------
def _assert_png(path):
    data = pathlib.Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE
    try:
        from PIL import Image

        with Image.open(path) as im:
            im.load()
            assert im.size[0] > 100 and im.size[1] > 100
    except ImportError:
        import matplotlib.image as mpimg

        assert mpimg.imread(path).shape[0] > 100


@pytest.mark.parametrize("source", ["checkpoint", "run_dir"])
def test_plot_writes_a_png(runs, tmp_path, source):
    pytest.importorskip("matplotlib")
    target = runs["first"][source if source == "run_dir" else "checkpoint"]
    out = tmp_path / "curves.png"
    result = cli("plot", target, "--output", out)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    _assert_png(out)


def test_plot_terminal_rendering(runs):
    result = cli("plot", runs["first"]["checkpoint"], "--width", 40, "--height", 8)
    assert result.exit_code == 0, result.output
    lines = result.stdout.rstrip("\n").split("\n")
    # two quantities (loss, accuracy), each height + 3 lines, one blank line between them
    assert len(lines) == 2 * (8 + 3) + 1
    assert lines[0].startswith("loss:") and lines[12].startswith("accuracy:")
    assert "validation" in lines[0] and lines[11] == ""
    assert all(len(line) <= 40 + 12 for line in lines[1:9])
    with_terminal = cli("plot", runs["first"]["run_dir"], "--terminal", "--width", 40, "--height", 8)
    assert with_terminal.stdout == result.stdout  # the run folder holds the same history


def test_terminal_curves_places_points():
    from nnctl.plots import terminal_curves

    text = terminal_curves({"loss": [3.0, 2.0, 1.0], "val_loss": [3.5, 2.5, 2.0], "lr": [0.1] * 3}, width=20, height=5)
    lines = text.split("\n")
    assert len(lines) == 5 + 3  # lr is bookkeeping: no panel
    rows = [line.split("|", 1)[1].ljust(20) for line in lines[1:6]]
    assert rows[0][0] == "o"  # highest value (val 3.5) top left
    assert rows[-1][-1] == "*"  # lowest value (train 1.0) bottom right
    assert lines[1].lstrip().startswith("3.5") and lines[5].lstrip().startswith("1.0")


def test_plot_errors_name_the_path(tmp_path):
    result = cli("plot", tmp_path / "nope.h5")
    assert result.exit_code == 2 and "nope.h5" in result.stderr and "Traceback" not in result.output
    result = cli("plot", tmp_path)
    assert result.exit_code == 2 and "metrics.jsonl" in result.stderr


# -- compare ---------------------------------------------------------------------------------------
def test_compare_json_best_values(runs):
    targets = [runs["first"]["checkpoint"], runs["second"]["run_dir"]]
    result = cli("compare", *targets, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [r["run"] for r in out["runs"]] == [str(t) for t in targets]
    for entry, done in zip(out["runs"], (runs["first"], runs["second"])):
        ck = Checkpoint(done["checkpoint"])
        hist = ck.history
        assert entry["epochs"] == len(hist["loss"]) == done["epochs_run"]
        assert entry["checkpoint_epoch"] == done["weights_epoch"]
        q = entry["quantities"]
        assert set(q) == {"loss", "val_loss", "accuracy", "val_accuracy"}
        for name, pick in (("loss", min), ("val_loss", min), ("accuracy", max), ("val_accuracy", max)):
            assert q[name]["final"] == pytest.approx(hist[name][-1])
            assert q[name]["best"] == pytest.approx(pick(hist[name]))
            assert hist[name][q[name]["best_epoch"] - 1] == pytest.approx(q[name]["best"])


def test_compare_table(runs):
    result = cli("compare", runs["first"]["checkpoint"], runs["second"]["checkpoint"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "best val_loss" in lines[0] and len(lines) == 4
    assert lines[2].startswith(str(runs["first"]["checkpoint"]))


# -- tensorboard -----------------------------------------------------------------------------------
def read_events(path):
    """Event protobufs from a TFRecord file: uint64 length, uint32 masked CRC, data, uint32 masked CRC."""
    from tensorboardX.crc32c import crc32c
    from tensorboardX.proto.event_pb2 import Event

    def masked(data):
        crc = crc32c(data)
        return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF

    raw = pathlib.Path(path).read_bytes()
    events, pos = [], 0
    while pos < len(raw):
        header = raw[pos : pos + 8]
        (length,) = struct.unpack("<Q", header)
        (length_crc,) = struct.unpack("<I", raw[pos + 8 : pos + 12])
        assert length_crc == masked(header)
        data = raw[pos + 12 : pos + 12 + length]
        (data_crc,) = struct.unpack("<I", raw[pos + 12 + length : pos + 16 + length])
        assert data_crc == masked(data)
        event = Event()
        event.ParseFromString(data)
        events.append(event)
        pos += 16 + length
    return events


def test_tensorboard_scalars_match_history(runs):
    files = glob.glob(str(runs["tmp"] / "tb" / "first" / "events.out.tfevents.*"))
    assert len(files) == 1
    scalars, histograms = {}, set()
    for event in read_events(files[0]):
        for value in event.summary.value:
            if value.HasField("histo"):
                histograms.add(value.tag)
                assert value.histo.num > 0
            else:
                scalars.setdefault(value.tag, {})[event.step] = value.simple_value
    hist = Checkpoint(runs["first"]["checkpoint"]).history
    for tag in ("loss", "val_loss", "accuracy", "val_accuracy", "lr"):
        assert sorted(scalars[tag]) == list(range(1, len(hist[tag]) + 1)), tag
        # TensorBoard stores float32
        assert [scalars[tag][e] for e in sorted(scalars[tag])] == pytest.approx(hist[tag], rel=1e-6), tag
    assert {"dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias"} <= histograms


def test_tensorboard_missing_is_a_clear_error(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import now raises ImportError
    from nnctl.tensorboard import TensorBoardWriter

    with pytest.raises(SpecError, match=r"train\.tensorboard: needs tensorboardX"):
        TensorBoardWriter(tmp_path)


# -- confusion matrix (evaluate --confusion-matrix) -------------------------------------------------
def test_confusion_from_checkpoint(runs, tmp_path):
    pytest.importorskip("matplotlib")
    from nnctl.data.readers import read_csv_table
    from nnctl.plots import confusion_from_checkpoint

    ckpt = runs["first"]["checkpoint"]
    out = tmp_path / "cm.png"
    result = confusion_from_checkpoint(ckpt, None, out, "auto")
    _assert_png(out)
    # independently: predict the raw test rows and count
    header, rows = read_csv_table(runs["tmp"] / "test.csv")
    x = np.array([[float(r[0]), float(r[1])] for r in rows])
    true = [r[2] for r in rows]
    _, pred = run.predict(run.restore(ckpt, "auto"), x)
    classes = result["classes"]
    assert classes == ["a", "b", "c"]
    expected = np.zeros((3, 3), int)
    for t, p in zip(true, pred):
        expected[classes.index(t), classes.index(str(p))] += 1
    assert result["counts"] == expected.tolist()
    assert np.trace(expected) > len(rows) // 2  # the blobs are separable: the model learned something


# -- init ------------------------------------------------------------------------------------------
def _init_and_train(data, spec_path, *extra):
    result = cli("init", data, "--output", spec_path, *extra)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(spec_path)
    text = spec_path.read_text()
    assert text.lstrip().startswith("#") and text.count("#") > 10  # commented
    s = spec_mod.load(spec_path, ["train.epochs=2"])
    done = run.train(s)
    assert done["epochs_run"] == 2
    assert pathlib.Path(done["checkpoint"]).is_file()
    return tomllib.loads(text), done


def test_init_csv_classification(tmp_path):
    write_blobs(tmp_path / "flowers.csv", 60, 0, extra_text=True)
    spec_dir = tmp_path / "specs"  # paths must be relative to the spec's folder, not the data's
    spec_dir.mkdir()
    raw, done = _init_and_train(tmp_path / "flowers.csv", spec_dir / "flowers.toml")
    assert raw["data"]["train"] == "../flowers.csv"
    assert "features" not in raw["data"] and raw["data"]["categorical"] == ["note"]  # 3 levels: one-hot
    assert raw["data"]["normalize"] == "standard" and raw["data"]["validation"]["split"] == 0.2
    assert raw["model"]["layers"][-1] == {"type": "Dense", "units": 3, "activation": "softmax"}
    assert raw["train"]["loss"] == "categorical_crossentropy"
    assert raw["train"]["early_stopping"] == {"monitor": "val_loss", "patience": 10, "restore_best": True}
    assert raw["train"]["epochs"] == 50
    assert pathlib.Path(done["checkpoint"]).parent == spec_dir / "runs"
    # an existing spec is never overwritten by accident
    again = cli("init", tmp_path / "flowers.csv", "--output", spec_dir / "flowers.toml")
    assert again.exit_code == 2 and "--force" in again.stderr
    assert cli("init", tmp_path / "flowers.csv", "--output", spec_dir / "flowers.toml", "--force").exit_code == 0


def test_init_csv_binary_and_target_option(tmp_path):
    write_blobs(tmp_path / "yesno.csv", 40, 2, labels=("no", "yes"))
    raw, _ = _init_and_train(tmp_path / "yesno.csv", tmp_path / "spec.toml", "--target", "label")
    assert raw["model"]["layers"][-1] == {"type": "Dense", "units": 1, "activation": "sigmoid"}
    assert raw["train"]["loss"] == "binary_crossentropy"
    bad = cli("init", tmp_path / "yesno.csv", "--output", tmp_path / "other.toml", "--target", "nope")
    assert bad.exit_code == 2 and "nope" in bad.stderr and "x1" in bad.stderr


def test_init_csv_regression(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 3))
    y = x @ np.array([1.5, -2.0, 0.5]) + 10 + rng.normal(0, 0.1, 80)
    with open(tmp_path / "houses.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "c", "price"])
        w.writerows([[*map(float, row), float(t)] for row, t in zip(x, y)])
    raw, done = _init_and_train(tmp_path / "houses.csv", tmp_path / "houses.toml")
    assert raw["train"]["loss"] == "mse" and raw["data"]["normalize_target"] == "standard"
    assert raw["model"]["layers"][-1] == {"type": "Dense", "units": 1}
    assert "stratify" not in raw["data"]["validation"]
    # a confusion matrix of a regression model is refused with a clear message
    from nnctl.plots import confusion_from_checkpoint

    with pytest.raises(SpecError, match="regression"):
        confusion_from_checkpoint(done["checkpoint"], str(tmp_path / "houses.csv"), tmp_path / "cm.png", "auto")


def test_init_npz_images(tmp_path):
    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    x = rng.integers(0, 60, size=(60, 12, 12, 1)).astype(np.uint8)
    for c in range(3):  # a bright square whose place depends on the class
        x[y == c, 4 * c : 4 * c + 4, 4 * c : 4 * c + 4, 0] = 250
    np.savez(tmp_path / "squares.npz", x=x, y=y)
    raw, _ = _init_and_train(tmp_path / "squares.npz", tmp_path / "squares.toml")
    types = [layer["type"] for layer in raw["model"]["layers"]]
    assert types == ["Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Flatten", "Dense", "Dense"]
    assert raw["data"]["rescale"] == "1/255" and "normalize" not in raw["data"]


def test_init_npz_table_with_other_keys(tmp_path):
    rng = np.random.default_rng(1)
    features = rng.normal(size=(50, 5))
    labels = (features[:, 0] > 0).astype(np.int64)
    np.savez(tmp_path / "table.npz", features=features, labels=labels)
    raw, _ = _init_and_train(tmp_path / "table.npz", tmp_path / "table.toml")
    assert (raw["data"]["x"], raw["data"]["y"]) == ("features", "labels")
    assert [layer["units"] for layer in raw["model"]["layers"]] == [64, 32, 1]


def test_init_image_folder(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    for c, colour in (("cats", 40), ("dogs", 220)):
        (tmp_path / "pets" / c).mkdir(parents=True)
        for i in range(8):
            pixels = np.clip(rng.normal(colour, 20, size=(10, 10)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(tmp_path / "pets" / c / f"{i}.png")
    raw, _ = _init_and_train(tmp_path / "pets", tmp_path / "pets.toml")
    assert raw["data"]["train"] == "pets" and raw["name"] == "pets"
    assert raw["model"]["layers"][-1]["activation"] == "sigmoid"


def test_init_to_stdout(tmp_path, monkeypatch):
    write_blobs(tmp_path / "d.csv", 30, 0)
    monkeypatch.chdir(tmp_path)
    result = cli("init", "d.csv", "--output", "-")
    assert result.exit_code == 0, result.output
    assert tomllib.loads(result.stdout)["data"]["train"] == "d.csv"
    assert not (tmp_path / "spec.toml").exists()


# -- schema ----------------------------------------------------------------------------------------
def test_schema_is_valid_json_and_matches_the_validator(tmp_path):
    result = cli("schema")
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    assert {"Dense", "Conv2D", "MaxPooling2D"} <= {s["title"] for s in schema["$defs"]["layer"]["oneOf"]}
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    specs = sorted((REPO / "specs").glob("*.toml"))
    assert specs
    for path in specs:
        raw = tomllib.loads(path.read_text())
        errors = [e.message for e in validator.iter_errors(raw)]
        assert not errors, f"{path.name}: {errors[:3]}"
        spec_mod.validate(raw)  # the validator agrees
    base = tomllib.loads((REPO / "specs" / "xor.toml").read_text())
    for mutate in (
        lambda d: d["train"].__setitem__("epoch", 3),
        lambda d: d["model"]["layers"][0].__setitem__("unit", 3),
        lambda d: d["data"].__setitem__("normalize", "zscore"),
        lambda d: d["train"].__setitem__("optimizer", {"type": "adam", "learning_rat": 0.1}),
    ):
        bad = json.loads(json.dumps(base))
        mutate(bad)
        assert not validator.is_valid(bad)
        with pytest.raises(SpecError):
            spec_mod.validate(bad)
    # names are case-insensitive in nnctl, so in the schema too
    ok = json.loads(json.dumps(base))
    ok["model"]["layers"][0]["type"] = "dense"
    ok["train"]["loss"] = "Binary_Crossentropy"
    assert validator.is_valid(ok)
    spec_mod.validate(ok)
