"""Category columns and missing values in tabular data: encoding by hand-built references, and a CSV with two
category columns, missing numbers and a new category at predict time trained, evaluated and predicted from
the CLI with the checkpoint's stored vocabulary and statistics."""

import json
import statistics
import subprocess
import sys

import h5py
import numpy as np
import pytest

from nnctl.data.columns import Column, TableEncoder
from nnctl.data.csvfile import read_columns
from nnctl.errors import DataError


def _cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "nnctl", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300
    )


# -- the encoder against hand-written matrices ---------------------------------------------------------
def test_onehot_ids_fill_and_indicator_by_hand(tmp_path):
    train = tmp_path / "t.csv"
    train.write_text("size,city,zone,y\n1,Paris,b,0\n,Lyon,a,1\n5,Paris,,0\n4,Nice,b,1\n")
    enc = TableEncoder(
        [
            Column("size", strategy="median", indicator=True),
            Column("city", kind="category"),
            Column("zone", kind="category", encoding="ids", strategy="most_frequent"),
        ]
    )
    cols = read_columns(train, enc.numeric, enc.text, enc.missing_ok)
    enc.fit(cols)
    assert enc.columns[0].fill == statistics.median([1, 5, 4])
    assert enc.columns[1].vocab == ["Lyon", "Nice", "Paris"]
    assert enc.columns[2].vocab == ["a", "b"] and enc.columns[2].fill == "b"
    assert enc.output_names() == [
        "size",
        "size_missing",
        "city=<unseen>",
        "city=Lyon",
        "city=Nice",
        "city=Paris",
        "zone",
    ]
    other = tmp_path / "o.csv"
    other.write_text("size,city,zone,y\n2,Berlin,a,0\n,Nice,,1\n")
    x, unseen = enc.transform(read_columns(other, enc.numeric, enc.text, enc.missing_ok))
    want = np.array(
        [
            [2, 0, 1, 0, 0, 0, 1],  # Berlin: the out-of-vocabulary slot; zone a = id 1
            [4, 1, 0, 0, 1, 0, 2],
        ],  # size filled with the median 4, flagged; zone filled with b
        dtype=np.float64,
    )
    np.testing.assert_array_equal(x, want)
    assert unseen == {"city": 1}
    back = TableEncoder.from_json(json.loads(json.dumps(enc.to_json())))
    np.testing.assert_array_equal(back.transform(read_columns(other, enc.numeric, enc.text, enc.missing_ok))[0], want)


@pytest.mark.parametrize(
    "strategy,expected", [("mean", 15 / 4), ("median", 2.5), ("most_frequent", 1.0), ("constant", -1.0)]
)
def test_fill_statistics(tmp_path, strategy, expected):
    path = tmp_path / "m.csv"
    path.write_text("v,y\n1,0\n1,0\nNA,1\n4,1\n9,0\n")
    enc = TableEncoder([Column("v", strategy=strategy, value=-1.0 if strategy == "constant" else None)])
    cols = read_columns(path, ["v"], [], {"v"})
    enc.fit(cols)
    x, _ = enc.transform(cols)
    assert x[:, 0].tolist() == pytest.approx([1, 1, expected, 4, 9], rel=1e-15)


def test_missing_category_without_a_strategy_names_the_row(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("city,y\nParis,0\n,1\n")
    enc = TableEncoder([Column("city", kind="category")])
    cols = read_columns(path, [], ["city", "y"])
    enc.fit(cols)
    with pytest.raises(DataError, match="line 3, column 'city': missing value ''; set data.missing"):
        enc.transform(cols)


# -- end to end from the CLI -------------------------------------------------------------------------------
CITIES = ["Lyon", "Nice", "Paris", "Porto"]
COLOURS = ["blue", "green", "red"]


def _rows(rng, n, cities=CITIES):
    rows = []
    for _ in range(n):
        city, colour = rng.choice(cities), rng.choice(COLOURS)
        age = rng.uniform(20, 60)
        label = "yes" if (city in ("Paris", "Nice")) != (age > 40) else "no"
        age_cell = "" if rng.random() < 0.1 else f"{age:.2f}"
        income = "NA" if rng.random() < 0.1 else f"{rng.normal(3, 1):.3f}"
        rows.append(f"{age_cell},{city},{income},{colour},{label}")
    return rows


SPEC = """
name = "people"
seed = 0
[data]
train = "train.csv"
test = "test.csv"
target = "label"
categorical = { colour = "ids" }
normalize = "standard"
missing = { strategy = "median", indicator = true, columns = { income = { strategy = "mean" } } }
[[model.layers]]
type = "Dense"
units = 16
activation = "relu"
[[model.layers]]
type = "Dense"
units = 2
activation = "softmax"
[train]
loss = "categorical_crossentropy"
optimizer = { type = "adam", learning_rate = 0.02 }
metrics = ["accuracy"]
epochs = 40
batch_size = 16
[output]
checkpoint = "people.h5"
"""


def test_categorical_and_missing_train_evaluate_predict(tmp_path):
    rng = np.random.default_rng(3)
    header = "age,city,income,colour,label"
    train_rows = _rows(rng, 240)
    (tmp_path / "train.csv").write_text("\n".join([header, *train_rows]) + "\n")
    test_rows = _rows(rng, 60, CITIES + ["Berlin"])  # Berlin never appears in training
    (tmp_path / "test.csv").write_text("\n".join([header, *test_rows]) + "\n")
    (tmp_path / "s.toml").write_text(SPEC)
    p = _cli("train", "s.toml", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "note:" in p.stderr and "'city'" in p.stderr and "categorical" in p.stderr  # city was auto-detected

    # what the checkpoint stores: the training split's vocabulary and statistics
    with h5py.File(tmp_path / "people.h5") as f:
        meta = json.loads(f["preprocessing/meta"][()])
    table = {c["name"]: c for c in meta["meta"]["table"]}
    ages = [float(r.split(",")[0]) for r in train_rows if r.split(",")[0]]
    incomes = [float(r.split(",")[2]) for r in train_rows if r.split(",")[2] != "NA"]
    assert table["city"]["kind"] == "category" and table["city"]["vocab"] == CITIES
    assert table["colour"]["encoding"] == "ids" and table["colour"]["vocab"] == COLOURS
    assert table["age"]["fill"] == pytest.approx(statistics.median(ages), rel=1e-12)
    assert table["income"]["fill"] == pytest.approx(statistics.fmean(incomes), rel=1e-12)
    assert table["age"]["indicator"] and table["income"]["indicator"]

    ev = _cli("evaluate", "people.h5", "--json", cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr
    result = json.loads(ev.stdout)
    berlin = sum(r.split(",")[1] == "Berlin" for r in test_rows)
    assert berlin > 0 and result["unseen"] == {"city": berlin}
    assert result["accuracy"] > 0.7

    new = tmp_path / "new.csv"
    new.write_text(f"{header}\n,Berlin,NA,purple,yes\n55,Paris,2.5,red,no\n")
    pr = _cli("predict", "people.h5", new, "--format", "jsonl", "--proba", cwd=tmp_path)
    assert pr.returncode == 0, pr.stderr
    assert "city 1" in pr.stderr and "colour 1" in pr.stderr
    first = [json.loads(line) for line in pr.stdout.splitlines()]
    assert len(first) == 2 and all(r["prediction"] in ("yes", "no") for r in first)

    lines = '{"age": null, "city": "Berlin", "income": "NA", "colour": "purple"}\n[55, "Paris", 2.5, "red"]\n'
    js = subprocess.run(
        [sys.executable, "-m", "nnctl", "predict", "people.h5", "-", "--format", "jsonl", "--proba"],
        input=lines,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert js.returncode == 0, js.stderr
    assert js.stdout == pr.stdout  # JSON lines read as the CSV cells they stand for

    # a different training file afterwards changes nothing: evaluate and predict read only the checkpoint
    (tmp_path / "train.csv").write_text("\n".join([header, *_rows(np.random.default_rng(9), 30, ["Oslo"])]) + "\n")
    assert _cli("predict", "people.h5", new, "--format", "jsonl", "--proba", cwd=tmp_path).stdout == pr.stdout
    again = _cli("evaluate", "people.h5", "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == result


def test_ids_only_table_feeds_an_embedding(tmp_path):
    rng = np.random.default_rng(0)
    rows = [
        f"{c},{k},{'a' if c in ('Paris', 'Nice') else 'b'}"
        for c, k in zip(rng.choice(CITIES, 120), rng.choice(COLOURS, 120))
    ]
    (tmp_path / "t.csv").write_text("city,colour,y\n" + "\n".join(rows) + "\n")
    (tmp_path / "s.toml").write_text("""
[data]
train = "t.csv"
categorical = { city = "ids", colour = "ids" }
[[model.layers]]
type = "Embedding"
output_dim = 4
[[model.layers]]
type = "Flatten"
[[model.layers]]
type = "Dense"
units = 2
activation = "softmax"
[train]
loss = "sparse_categorical_crossentropy"
metrics = ["accuracy"]
epochs = 30
optimizer = { type = "adam", learning_rate = 0.05 }
[output]
checkpoint = "e.h5"
""")
    p = _cli("train", "s.toml", "--json", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    done = json.loads(p.stdout.splitlines()[-1])
    assert done["metrics"]["accuracy"] > 0.9
    (tmp_path / "n.csv").write_text("city,colour\nOslo,red\nParis,blue\n")
    pr = _cli("predict", "e.h5", "n.csv", cwd=tmp_path)
    assert pr.returncode == 0, pr.stderr
    assert pr.stdout.splitlines()[2] == "a"


def test_unknown_categorical_column_is_a_spec_error(tmp_path):
    (tmp_path / "t.csv").write_text("a,y\n1,0\n2,1\n")
    (tmp_path / "s.toml").write_text(
        '[data]\ntrain = "t.csv"\ncategorical = ["town"]\n[[model.layers]]\ntype = "Dense"\nunits = 1\n'
    )
    p = _cli("train", "s.toml", cwd=tmp_path)
    assert p.returncode == 2 and "data.categorical: 'town' is not a feature column" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_a_text_column_with_many_levels_keeps_the_number_error(tmp_path):
    """Past max_categories a non-numeric column is not a category: the reader names its first cell."""
    rows = [f"{i},name{i},{i % 2}" for i in range(12)]
    (tmp_path / "t.csv").write_text("a,who,y\n" + "\n".join(rows) + "\n")
    (tmp_path / "s.toml").write_text(
        '[data]\ntrain = "t.csv"\nmax_categories = 5\n[[model.layers]]\n'
        'type = "Dense"\nunits = 1\nactivation = "sigmoid"\n'
        '[train]\nloss = "binary_crossentropy"\n'
    )
    p = _cli("train", "s.toml", cwd=tmp_path)
    assert p.returncode == 2
    assert p.stderr == f"error: {tmp_path / 't.csv'}: line 2, column 'who': expected a number, found 'name0'\n"


def test_unknown_key_of_a_per_column_missing_rule(tmp_path):
    (tmp_path / "t.csv").write_text("a,y\n1,0\n,1\n")
    (tmp_path / "s.toml").write_text(
        '[data]\ntrain = "t.csv"\nmissing = { columns = { a = { strategy = "mean", '
        'fill = 1 } } }\n[[model.layers]]\ntype = "Dense"\nunits = 1\n'
    )
    p = _cli("train", "s.toml", cwd=tmp_path)
    assert p.returncode == 2 and "data.missing.columns.a.fill: unknown key" in p.stderr
