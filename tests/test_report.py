"""Per-class precision/recall/F1/support and confusion counts: by hand, by a Python loop, and from the CLI
against the labels `nnctl predict` gives for the same file."""

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from helpers import ROOT, SPECS
from nnctl.cli.main import app
from nnctl.report import confusion_counts, confusion_from_ids, per_class

runner = CliRunner()


def test_hand_computed_case():
    true = ["a", "a", "a", "b", "b", "c"]
    pred = ["a", "b", "a", "b", "c", "a"]
    counts = confusion_counts(true, pred, ["a", "b", "c"])
    assert counts.tolist() == [[2, 1, 0], [0, 1, 1], [1, 0, 0]]
    rep = per_class(counts, ["a", "b", "c"])
    # a: tp 2, predicted 3, actual 3; b: tp 1, predicted 2, actual 2; c: tp 0, predicted 1, actual 1
    assert rep["per_class"]["a"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3})
    assert rep["per_class"]["b"] == pytest.approx({"precision": 1 / 2, "recall": 1 / 2, "f1": 1 / 2, "support": 2})
    assert rep["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert rep["macro_avg"]["f1"] == pytest.approx((2 / 3 + 1 / 2) / 3)
    assert rep["weighted_avg"]["recall"] == pytest.approx((3 * 2 / 3 + 2 * 1 / 2) / 6)


def test_vectorised_counts_equal_a_loop():
    rng = np.random.default_rng(0)
    t, p = rng.integers(0, 7, 5000), rng.integers(0, 7, 5000)
    loop = np.zeros((7, 7), dtype=np.int64)
    for a, b in zip(t.tolist(), p.tolist()):
        loop[a, b] += 1
    np.testing.assert_array_equal(confusion_from_ids(t, p, 7), loop)


def test_a_label_outside_the_classes_is_refused():
    with pytest.raises(ValueError, match="'z' is not one of the classes"):
        confusion_counts(["a", "z"], ["a", "a"], ["a", "b"])


def test_evaluate_json_per_class_matches_predict(tmp_path):
    ckpt = tmp_path / "iris.h5"
    assert (
        runner.invoke(
            app, ["train", str(SPECS / "iris_mlp.toml"), "--out", str(ckpt), "--epochs", "20", "--quiet"]
        ).exit_code
        == 0
    )
    test = ROOT / "examples" / "data" / "iris-test.csv"
    r = runner.invoke(app, ["evaluate", str(ckpt), "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    pr = runner.invoke(app, ["predict", str(ckpt), str(test)])
    predicted = pr.stdout.splitlines()[1:]
    with open(test) as f:
        true = [row["species"] for row in csv.DictReader(f)]
    classes = got["confusion"]["classes"]
    assert classes == sorted(set(true))
    for i, c in enumerate(classes):
        for j, d in enumerate(classes):
            assert got["confusion"]["counts"][i][j] == sum(t == c and p == d for t, p in zip(true, predicted))
        tp = sum(t == c and p == c for t, p in zip(true, predicted))
        n_pred = sum(p == c for p in predicted)
        assert got["per_class"][c]["support"] == true.count(c)
        assert got["per_class"][c]["recall"] == pytest.approx(tp / true.count(c))
        assert got["per_class"][c]["precision"] == pytest.approx(tp / n_pred if n_pred else 0.0)
    assert got["accuracy"] == pytest.approx(np.trace(got["confusion"]["counts"]) / len(true))
    text = runner.invoke(app, ["evaluate", str(ckpt)])
    assert "precision" in text.stdout and "weighted avg" in text.stdout
