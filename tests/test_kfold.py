"""K-fold cross-validation: folds disjoint, covering the data, stratified and seeded; preprocessing fitted on
the training folds only; ``nnctl train --k-fold`` writes K ordinary runs and a mean/std run compare reads."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from helpers import ROOT, SPECS, load_spec
from nnctl import kfold
from nnctl.errors import SpecError

IRIS = ROOT / "examples" / "data" / "iris.csv"


def nnctl(*args):
    return subprocess.run([sys.executable, "-m", "nnctl", *map(str, args)], capture_output=True, text=True)


def check_partition(folds, n, k):
    joined = np.concatenate(folds)
    assert len(folds) == k
    assert len(joined) == n and np.array_equal(np.sort(joined), np.arange(n))  # disjoint and covering
    sizes = [len(f) for f in folds]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("n,k", [(10, 2), (103, 5), (7, 7)])
def test_plain_folds_partition_the_samples(n, k):
    check_partition(kfold.fold_indices(n, k, seed=1), n, k)


def test_stratified_folds_keep_each_class_share():
    rng = np.random.default_rng(0)
    labels = rng.choice(np.array(["a", "b", "c"]), size=97, p=[0.6, 0.3, 0.1])
    folds = kfold.fold_indices(len(labels), 4, seed=3, labels=labels)
    check_partition(folds, 97, 4)
    for c in np.unique(labels):
        total = int((labels == c).sum())
        counts = [int((labels[f] == c).sum()) for f in folds]
        assert sum(counts) == total and max(counts) - min(counts) <= 1, (c, counts)


def test_folds_are_seeded():
    labels = np.repeat([0, 1], 20)
    a = kfold.fold_indices(40, 5, seed=7, labels=labels)
    b = kfold.fold_indices(40, 5, seed=7, labels=labels)
    c = kfold.fold_indices(40, 5, seed=8, labels=labels)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_bad_k_is_refused():
    with pytest.raises(SpecError, match="2 to 5 folds"):
        kfold.fold_indices(5, 6, seed=0)
    with pytest.raises(SpecError):
        kfold.fold_indices(5, 1, seed=0)


def test_fold_data_is_held_out_and_scaled_with_training_statistics(tmp_path):
    spec = load_spec("iris_mlp.toml", tmp_path)  # normalize = "standard"
    with open(IRIS) as f:
        rows = list(csv.DictReader(f))
    x = np.array([[float(r[c]) for c in ("sepal_length", "sepal_width", "petal_length", "petal_width")] for r in rows])
    species = np.array([r["species"] for r in rows])
    seen = []
    for val_idx, ds in kfold.fold_datasets(spec, 3):
        seen.append(val_idx)
        train = np.setdiff1d(np.arange(len(x)), val_idx)
        mean, std = x[train].mean(axis=0), x[train].std(axis=0)
        np.testing.assert_allclose(ds.x_val, (x[val_idx] - mean) / std, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(ds.x_train, (x[train] - mean) / std, rtol=1e-5, atol=1e-5)
        # one-hot targets of the held-out rows, in the sorted class order
        classes = np.unique(species)
        np.testing.assert_array_equal(ds.y_val.argmax(axis=1), np.searchsorted(classes, species[val_idx]))
        for c in classes:  # iris has 40 of each class in the training file: 13 or 14 per fold
            assert int((species[val_idx] == c).sum()) in (13, 14)
    check_partition(seen, len(x), 3)


def test_cli_k_fold_runs_summary_and_compare(tmp_path):
    out = tmp_path / "iris.h5"
    r = nnctl("train", SPECS / "iris_mlp.toml", "--k-fold", 3, "--epochs", 2, "--out", out, "--json")
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    dones = [e for e in events if e["event"] == "done"]
    summary = events[-1]
    assert summary["event"] == "kfold" and summary["k"] == 3 and summary["stratified"] is True
    assert [d["fold"] for d in dones] == [1, 2, 3]
    for name in ("val_loss", "val_accuracy"):
        vals = np.array([d["metrics"][name] for d in dones])
        assert summary["mean"][name] == pytest.approx(vals.mean()) and summary["std"][name] == pytest.approx(vals.std())
    assert sum(f["validation_samples"] for f in summary["folds"]) == 120
    for i in (1, 2, 3):  # each fold an ordinary run: checkpoint and run folder
        assert (tmp_path / f"iris.fold{i}.h5").is_file()
        assert (tmp_path / f"iris.fold{i}.run" / "metrics.jsonl").is_file()
    r = nnctl("compare", tmp_path / "iris.kfold", tmp_path / "iris.fold1.run", "--json")
    assert r.returncode == 0, r.stderr
    first = json.loads(r.stdout)["runs"][0]["quantities"]
    assert first["val_accuracy"]["final"] == pytest.approx(summary["mean"]["val_accuracy"])
    assert first["val_accuracy_std"]["final"] == pytest.approx(summary["std"]["val_accuracy"])
    r = nnctl("evaluate", tmp_path / "iris.fold2.h5", "--json")
    assert r.returncode == 0, r.stderr


def test_cli_k_fold_table(tmp_path):
    r = nnctl("train", SPECS / "iris_mlp.toml", "--k-fold", 2, "--epochs", 1, "--out", tmp_path / "m.h5")
    assert r.returncode == 0, r.stderr
    assert "2-fold cross-validation (stratified" in r.stdout and "mean" in r.stdout and "std" in r.stdout
    assert "fold 2/2" in r.stderr


@pytest.mark.parametrize(
    "args,needle", [(["--k-fold", 1], "--k-fold"), (["--k-fold", 2, "--resume", "x.h5"], "--resume")]
)
def test_cli_bad_k_fold_is_one_error_line(tmp_path, args, needle):
    r = nnctl("train", SPECS / "iris_mlp.toml", *args, "--out", tmp_path / "m.h5")
    assert r.returncode == 2 and r.stderr.count("error:") == 1 and needle in r.stderr


def test_time_series_is_refused(tmp_path):
    r = nnctl("train", SPECS / "sine_lstm.toml", "--k-fold", 3, "--epochs", 1, "--out", tmp_path / "s.h5")
    assert r.returncode == 2 and r.stderr.count("error:") == 1 and "ordered in time" in r.stderr
