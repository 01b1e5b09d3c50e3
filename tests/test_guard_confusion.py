"""``nnctl evaluate --confusion-matrix`` draws the evaluation's own counts: one restore and one forward pass over
the data, the same counts as the per-class report, and a PNG path that cannot be written fails before the work."""

import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from nnctl.cli.main import app
from nnctl.graph import Model

matplotlib = pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cm")
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [4, 0], [0, 4]])
    y = np.arange(90) % 3
    x = centres[y] + rng.normal(0, 0.8, (90, 2))
    labels = np.array(["a", "b", "c"])[y]
    (tmp / "d.csv").write_text("u,v,label\n" + "".join(f"{p:.4f},{q:.4f},{c}\n" for (p, q), c in zip(x, labels)))
    (tmp / "s.toml").write_text(
        f'name = "cm"\n[data]\ntrain = "{tmp / "d.csv"}"\n[[model.layers]]\ntype = "Dense"\n'
        'units = 8\nactivation = "relu"\n[[model.layers]]\ntype = "Dense"\nunits = 3\n'
        'activation = "softmax"\n[train]\nloss = "categorical_crossentropy"\nepochs = 30\n'
        f'optimizer = {{type = "adam", learning_rate = 0.05}}\n[output]\ncheckpoint = "{tmp / "cm.h5"}"\n'
    )
    p = subprocess.run(
        [sys.executable, "-m", "nnctl", "train", tmp / "s.toml", "--quiet"], capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 0, p.stderr
    return tmp, tmp / "cm.h5", x, labels


def _counting(monkeypatch):
    rows = []
    forward = Model.forward

    def counted(self, x, *a, **kw):
        rows.append(len(x))
        return forward(self, x, *a, **kw)

    monkeypatch.setattr(Model, "forward", counted)
    return rows


def test_one_forward_pass_and_the_report_s_counts(trained, monkeypatch):
    tmp, ckpt, x, labels = trained
    rows = _counting(monkeypatch)
    png = tmp / "cm.png"
    r = CliRunner().invoke(
        app, ["evaluate", str(ckpt), "--data", str(tmp / "d.csv"), "--json", "--confusion-matrix", str(png)]
    )
    assert r.exit_code == 0, r.output
    assert sum(rows) == len(x)  # every row once: no second restore-and-predict for the picture
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = json.loads(r.stdout)
    assert result["confusion_matrix"] == str(png)
    # the counts, independently: predict the rows and tally true x predicted
    from nnctl import run

    _, pred = run.predict(run.restore(ckpt, "cpu"), x)
    expected = np.zeros((3, 3), int)
    for t, p in zip(labels, pred):
        expected["abc".index(t), "abc".index(str(p))] += 1
    assert result["confusion"] == {"classes": ["a", "b", "c"], "counts": expected.tolist()}
    assert np.trace(expected) > 60  # separable blobs: the model learned


def test_an_unwritable_png_path_fails_before_evaluating(trained, monkeypatch):
    tmp, ckpt, _, _ = trained
    rows = _counting(monkeypatch)
    (tmp / "folder.png").mkdir(exist_ok=True)
    r = CliRunner().invoke(
        app, ["evaluate", str(ckpt), "--data", str(tmp / "d.csv"), "--confusion-matrix", str(tmp / "folder.png")]
    )
    assert r.exit_code == 2 and "folder.png" in r.stderr and "folder" in r.stderr
    assert rows == []


def test_a_regression_model_is_refused(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 2))
    (tmp_path / "r.csv").write_text("u,v,price\n" + "".join(f"{p},{q},{p + q}\n" for p, q in x))
    (tmp_path / "r.toml").write_text(
        f'name = "r"\n[data]\ntrain = "{tmp_path / "r.csv"}"\n[[model.layers]]\n'
        'type = "Dense"\nunits = 1\n[train]\nloss = "mse"\nepochs = 1\n'
        f'[output]\ncheckpoint = "{tmp_path / "r.h5"}"\n'
    )
    cmd = [sys.executable, "-m", "nnctl"]
    assert subprocess.run([*cmd, "train", tmp_path / "r.toml", "-q"], capture_output=True, timeout=120).returncode == 0
    p = subprocess.run(
        [*cmd, "evaluate", tmp_path / "r.h5", "--data", tmp_path / "r.csv", "--confusion-matrix", tmp_path / "cm.png"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [p.stderr.strip()]
    assert "regression model" in p.stderr and not (tmp_path / "cm.png").exists()
