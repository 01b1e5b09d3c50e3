"""--k-fold on a CSV with categories and missing cells: each fold fits its vocabularies and fill values on its
training folds only, so a level present only in the held-out fold is out of vocabulary there, and a missing
cell is filled with the training folds' statistic (nothing of the held-out fold leaks into its encoding)."""

import json

import numpy as np

from nnctl import kfold, run, spec

CITIES = ["ams", "bcn", "cph"]


def _table(tmp_path, n=30):
    rng = np.random.default_rng(7)
    city = [CITIES[i % 3] for i in range(n)]
    city[11] = "oslo"  # a level of one row only: whichever fold holds it has never seen it in training
    num = rng.normal(size=n).round(3)
    missing = {4, 17, 25}
    y = (rng.uniform(size=n) < 0.5).astype(int)
    lines = ["city,num,y"] + [f"{c},{'' if i in missing else num[i]},{t}" for i, (c, t) in enumerate(zip(city, y))]
    path = tmp_path / "t.csv"
    path.write_text("\n".join(lines) + "\n")
    return path, np.array(city), np.where([i in missing for i in range(n)], np.nan, num)


def _spec(tmp_path, csv, **data):
    return spec.validate(
        {
            "name": "kf",
            "seed": 3,
            "dtype": "float64",
            "data": {
                "train": str(csv),
                "target": "y",
                "categorical": ["city"],
                "missing": {"strategy": "mean"},
                **data,
            },
            "model": {"layers": [{"type": "Dense", "units": 1, "activation": "sigmoid"}]},
            "train": {"loss": "binary_crossentropy", "epochs": 1, "batch_size": 8},
            "output": {"checkpoint": str(tmp_path / "kf.h5")},
        },
        "kf.toml",
    )


def test_each_fold_fits_vocabulary_and_fills_on_its_training_rows(tmp_path):
    csv, city, num = _table(tmp_path)
    n, held_oslo = len(city), 0
    for val_idx, ds in kfold.fold_datasets(_spec(tmp_path, csv), 3):
        train = np.setdiff1d(np.arange(n), val_idx)
        vocab = sorted(set(city[train]))
        width = 1 + len(vocab)  # <unseen> slot, then the training levels sorted
        assert ds.x_train.shape[1] == width + 1 and ds.x_val.shape[1] == width + 1
        # one-hot of the held-out rows against the training folds' vocabulary (slot 0: unseen)
        expect = np.zeros((len(val_idx), width))
        for r, c in enumerate(city[val_idx]):
            expect[r, 1 + vocab.index(c) if c in vocab else 0] = 1.0
        np.testing.assert_array_equal(ds.x_val[:, :width], expect)
        # missing cells take the mean of the training folds' numbers, not of the whole file
        fill = np.nanmean(num[train])
        np.testing.assert_allclose(ds.x_val[:, width], np.where(np.isnan(num[val_idx]), fill, num[val_idx]), rtol=1e-12)
        np.testing.assert_allclose(ds.x_train[:, width], np.where(np.isnan(num[train]), fill, num[train]), rtol=1e-12)
        if 11 in val_idx:
            held_oslo += 1
            assert "oslo" not in vocab and ds.prep.unseen == {"city": 1}
            assert ds.x_val[list(val_idx).index(11), 0] == 1.0
        else:
            assert "oslo" in vocab and ds.prep.unseen == {}
    assert held_oslo == 1


def test_k_fold_summary_reports_the_unseen_level(tmp_path):
    csv, _, _ = _table(tmp_path)
    result = kfold.cross_validate(_spec(tmp_path, csv), 3, run.train)
    unseen = [f["unseen_in_validation"] for f in result["folds"]]
    assert sorted(json.dumps(u) for u in unseen) == sorted([json.dumps({"city": 1}), "{}", "{}"])
    stored = json.loads((tmp_path / "kf.kfold" / "kfold.json").read_text())
    assert [f["unseen_in_validation"] for f in stored["folds"]] == unseen


def test_k_fold_keeps_each_rows_sample_weight(tmp_path):
    """Weights follow their rows into the folds: the training weights of fold i are the file's weights of the
    rows outside fold i."""
    csv, city, _ = _table(tmp_path)
    lines = csv.read_text().splitlines()
    w = np.arange(len(city), dtype=float) / 10
    csv.write_text("\n".join([lines[0] + ",w"] + [f"{line},{w[i]}" for i, line in enumerate(lines[1:])]) + "\n")
    for val_idx, ds in kfold.fold_datasets(_spec(tmp_path, csv, sample_weight="w"), 3):
        np.testing.assert_array_equal(ds.w_train, np.delete(w, val_idx))
        assert ds.x_train.shape[1] == len(set(city[np.setdiff1d(np.arange(len(city)), val_idx)])) + 2
