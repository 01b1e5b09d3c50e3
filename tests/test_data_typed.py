"""The data layer reads the typed spec: loaders take the DataSection and the seed explicitly, and the readers
that inference calls with a checkpoint's stored spec (a plain dict) give what they give for the Spec."""

import csv

import numpy as np

from nnctl.data import load_dataset, load_split, text
from nnctl.data.preprocess import Preprocessor
from nnctl.spec import validate
from nnctl.spec_sections import DataSection


def _texts(path, n=40):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows([[f"row{i} word", "ab"[i % 2]] for i in range(n)])  # each row's first word its own


def _spec(tmp_path, seed):
    return validate(
        {
            "seed": seed,
            "data": {"kind": "text", "train": "train.csv", "validation": {"split": 0.25}},
            "model": {
                "layers": [
                    {"type": "Embedding", "output_dim": 4},
                    {"type": "GlobalAveragePooling1D"},
                    {"type": "Dense", "units": 2, "activation": "softmax"},
                ]
            },
            "train": {"loss": "categorical_crossentropy"},
        },
        base_dir=tmp_path,
    )


def test_the_text_loader_splits_with_the_seed_it_is_given(tmp_path):
    _texts(tmp_path / "train.csv")
    for seed in (0, 5):
        spec = _spec(tmp_path, seed)
        assert isinstance(spec.data, DataSection)
        s = text.load(spec.data, Preprocessor("text", "categorical"), seed)
        # the documented draw: 25 % of 40 rows, the first of a permutation from the seed's data stream
        held = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2,))).permutation(40)[:10]
        oov = 1  # rows held out never reach the vocabulary: their first word reads as out-of-vocabulary
        assert len(s.x_val) == 10 and len(s.x_train) == 30
        assert np.all(s.x_val[:, 0] == oov) and np.all(s.x_train[:, 0] != oov)
        assert list(s.y_val) == ["ab"[i % 2] for i in sorted(held)]  # kept in file order
        ds = load_dataset(spec)  # load_dataset passes the spec's seed: the same rows
        assert np.array_equal(ds.x_val, s.x_val)


def test_load_split_reads_a_stored_spec_as_the_spec(tmp_path):
    rows = np.random.default_rng(0).random((30, 3))
    with open(tmp_path / "t.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "y"])
        w.writerows([[r[0], r[1], int(r[2] > 0.5)] for r in rows])
    spec = validate(
        {
            "data": {"train": "t.csv", "normalize": "standard"},
            "model": {"layers": [{"type": "Dense", "units": 1, "activation": "sigmoid"}]},
            "train": {"loss": "binary_crossentropy"},
        },
        base_dir=tmp_path,
    )
    ds = load_dataset(spec)
    spec = validate({**spec.to_dict(), "model": {**spec.to_dict()["model"], "input_shape": [2]}})
    x, y = load_split(spec, ds.prep, str(tmp_path / "t.csv"))
    x2, y2 = load_split(spec.to_dict(), ds.prep, str(tmp_path / "t.csv"))
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    np.testing.assert_allclose(x, (rows[:, :2] - rows[:, :2].mean(0)) / rows[:, :2].std(0), rtol=1e-5, atol=1e-6)
