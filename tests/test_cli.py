"""The CLI as users run it: CliRunner for every verb, a real subprocess for streams and exit codes."""

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from helpers import ROOT, SPECS
from nnctl.cli.main import app

runner = CliRunner()
IRIS_TEST = ROOT / "examples/data/iris-test.csv"


def nnctl(*args, input=None, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "nnctl", *map(str, args)],
        input=input,
        capture_output=True,
        text=isinstance(input, str) or input is None,
        cwd=cwd,
        timeout=300,
    )


@pytest.fixture(scope="module")
def iris_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("iris") / "iris.h5"
    r = runner.invoke(app, ["train", str(SPECS / "iris_mlp.toml"), "--out", str(out), "--epochs", "60", "--quiet"])
    assert r.exit_code == 0, r.output
    return out


def test_train_json_lines_are_pure_json(tmp_path):
    out = tmp_path / "x.h5"
    p = nnctl("train", SPECS / "iris_mlp.toml", "--out", out, "--epochs", "3", "--json")
    assert p.returncode == 0, p.stderr
    events = [json.loads(line) for line in p.stdout.splitlines()]
    assert [e["event"] for e in events] == ["epoch", "epoch", "epoch", "done"]
    assert events[0]["epoch"] == 1 and {"loss", "accuracy", "val_loss", "val_accuracy", "seconds"} <= set(events[0])
    assert events[-1]["checkpoint"] == str(out) and events[-1]["epochs_run"] == 3
    assert "\x1b" not in p.stderr  # no progress bar control codes when stderr is not a terminal


def test_evaluate_json_and_table(iris_ckpt):
    r = runner.invoke(app, ["evaluate", str(iris_ckpt), "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["samples"] == 30 and 0.9 <= result["accuracy"] <= 1.0
    r = runner.invoke(app, ["evaluate", str(iris_ckpt), "--data", str(IRIS_TEST)])
    assert r.exit_code == 0 and "accuracy" in r.stdout


def test_predict_from_stdin_returns_original_labels(iris_ckpt):
    rows = IRIS_TEST.read_text().splitlines()
    header = rows[0].split(",")[:-1]
    # columns in another order than training: matched by name
    shuffled = [header[::-1]] + [r.split(",")[:-1][::-1] for r in rows[1:]]
    text = "\n".join(",".join(r) for r in shuffled) + "\n"
    p = nnctl("predict", iris_ckpt, "-", "--proba", input=text)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "prediction,proba_setosa,proba_versicolor,proba_virginica"
    truth = [r.split(",")[-1] for r in rows[1:]]
    preds = [line.split(",")[0] for line in lines[1:]]
    assert len(preds) == 30 and np.mean(np.array(preds) == np.array(truth)) >= 0.9
    probs = np.array([[float(v) for v in line.split(",")[1:]] for line in lines[1:]])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_predict_formats_and_round_trip_identical(iris_ckpt, tmp_path):
    from nnctl import run

    r = runner.invoke(app, ["predict", str(iris_ckpt), str(IRIS_TEST), "--format", "jsonl"])
    assert r.exit_code == 0, r.output
    first = json.loads(r.stdout.splitlines()[0])
    assert first["prediction"] in ("setosa", "versicolor", "virginica")
    out = tmp_path / "p.npy"
    r = runner.invoke(app, ["predict", str(iris_ckpt), str(IRIS_TEST), "--format", "npy", "--proba", "-o", str(out)])
    assert r.exit_code == 0, r.output
    saved = np.load(out)
    # round trip: a checkpoint rebuilt twice gives bit-identical outputs
    x = np.loadtxt(IRIS_TEST, delimiter=",", skiprows=1, usecols=range(4))
    a, _ = run.predict(run.restore(iris_ckpt, "auto"), x)
    b, _ = run.predict(run.restore(iris_ckpt, "auto"), x)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(saved, a)


def test_check_summary_info(iris_ckpt):
    r = runner.invoke(app, ["check", str(SPECS / "iris_mlp.toml"), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert [layer["params"] for layer in info["layers"]] == [4 * 16 + 16, 16 * 3 + 3]
    assert info["layers"][-1]["output_shape"] == [None, 3] and info["input_shape"] == [None, 4]  # JSON null
    r = runner.invoke(app, ["summary", str(iris_ckpt)])
    assert r.exit_code == 0 and "Total params: 131" in r.stdout
    r = runner.invoke(app, ["info", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["auto"] in ("cpu", "gpu")


def test_bad_spec_exit_2_names_field(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text((SPECS / "iris_mlp.toml").read_text().replace("units = 16", "unit = 16"))
    p = nnctl("train", bad)
    assert p.returncode == 2
    assert p.stderr.startswith("error: ") and "model.layers[0].unit" in p.stderr and "units" in p.stderr
    lines = p.stderr.strip().splitlines()
    assert "Traceback" not in p.stderr and all(line.startswith("error: ") for line in lines)
    assert len(lines) == 2 and "model.layers[0].units: required key is missing" in lines[1]  # every problem


def test_bad_data_exit_2_names_row(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("a,b,y\n1,2,x\n3,oops,y\n")
    spec = tmp_path / "s.toml"
    spec.write_text(
        '[data]\ntrain = "d.csv"\n[[model.layers]]\ntype = "Dense"\nunits = 2\nactivation = "softmax"\n'
        '[train]\nloss = "categorical_crossentropy"\n'
    )
    p = nnctl("train", spec)
    assert p.returncode == 2 and "d.csv: line 3, column 'b'" in p.stderr and "oops" in p.stderr


def test_bad_checkpoint_exit_2(tmp_path, iris_ckpt):
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all")
    p = nnctl("evaluate", junk)
    assert p.returncode == 2 and "junk.h5" in p.stderr and "Traceback" not in p.stderr
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = 1
    p = nnctl("predict", other)
    assert p.returncode == 2 and "not an nnctl checkpoint" in p.stderr
    # a wrongly shaped weight array
    broken = tmp_path / "broken.h5"
    broken.write_bytes(iris_ckpt.read_bytes())
    with h5py.File(broken, "a") as f:
        del f["weights/dense/kernel"]
        f["weights/dense/kernel"] = np.zeros((5, 16), np.float32)
    p = nnctl("evaluate", broken)
    assert p.returncode == 2 and "weights/dense/kernel has shape [5, 16]" in p.stderr and "[4, 16]" in p.stderr
    # truncated file
    trunc = tmp_path / "trunc.h5"
    trunc.write_bytes(iris_ckpt.read_bytes()[:2000])
    p = nnctl("evaluate", trunc)
    assert p.returncode == 2 and "trunc.h5" in p.stderr


def test_predict_wrong_feature_count(iris_ckpt):
    p = nnctl("predict", iris_ckpt, "-", input="sepal_length,sepal_width\n1,2\n")
    assert p.returncode == 2 and "missing feature column 'petal_length'" in p.stderr


def test_unseen_test_label_is_an_error(tmp_path):
    (tmp_path / "tr.csv").write_text("a,y\n1,cat\n2,dog\n3,cat\n4,dog\n")
    (tmp_path / "te.csv").write_text("a,y\n1,cat\n2,bird\n")
    spec = tmp_path / "s.toml"
    spec.write_text(
        '[data]\ntrain = "tr.csv"\ntest = "te.csv"\n[[model.layers]]\ntype = "Dense"\nunits = 2\n'
        'activation = "softmax"\n[train]\nloss = "categorical_crossentropy"\nepochs = 1\n'
    )
    p = nnctl("train", spec)
    assert p.returncode == 2 and "te.csv: row 2: label 'bird' was not seen in training" in p.stderr


def test_usage_error_exit_2():
    p = nnctl("train")
    assert p.returncode == 2


def test_atomic_write_keeps_old_file_when_interrupted(tmp_path, monkeypatch):
    from nnctl import checkpoint

    target = tmp_path / "c.h5"
    target.write_bytes(b"the good old checkpoint")

    def half_then_crash(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half a ")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        checkpoint.atomic_write(target, half_then_crash)
    assert target.read_bytes() == b"the good old checkpoint"
    assert os.listdir(tmp_path) == ["c.h5"]  # no temp file left behind


def test_set_overrides(tmp_path):
    out = tmp_path / "o.h5"
    r = runner.invoke(
        app,
        [
            "train",
            str(SPECS / "iris_mlp.toml"),
            "--out",
            str(out),
            "--json",
            "--set",
            "train.epochs=2",
            "--set",
            "train.optimizer.learning_rate=0.05",
            "--set",
            "model.layers[0].units=8",
        ],
    )
    assert r.exit_code == 0, r.output
    with h5py.File(out) as f:
        assert f["weights/dense/kernel"].shape == (4, 8)
        assert json.loads(f["spec"][()])["train"]["optimizer"]["learning_rate"] == 0.05
        assert len(f["history/loss"]) == 2


def test_shell_completion_knows_the_verbs():
    import os
    import subprocess
    import sys

    env = dict(os.environ, COMP_WORDS="nnctl tr", COMP_CWORD="1", _NNCTL_COMPLETE="complete_bash")
    p = subprocess.run(
        [sys.executable, "-c", "from nnctl.cli.main import app; app(prog_name='nnctl')"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert p.stdout.split() == ["train"], (p.stdout, p.stderr)
