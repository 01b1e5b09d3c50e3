"""nnctl data convert: a CSV block by block to HDF5, the same numbers as the CSV reader, exact errors, and the
converted file trains streamed."""

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

from nnctl.data import convert
from nnctl.data.csvfile import read_columns
from nnctl.errors import DataError


def _write(path, rows, newline="\n"):
    path.write_bytes(("a,b,c,label" + newline + newline.join(rows) + newline).encode())


def _rows(n, rng):
    return [f'{rng.normal():.17g},"{rng.normal() * 1e5:.6e}",{i % 9},{i % 3}' for i in range(n)]


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_blocks_give_the_csv_readers_numbers(tmp_path, monkeypatch, newline):
    monkeypatch.setattr(convert, "BLOCK_ROWS", 7)  # many blocks, a short last one
    src = tmp_path / "d.csv"
    _write(src, _rows(40, np.random.default_rng(0)), newline)
    info = convert.convert_csv(src, tmp_path / "d.h5", target="label", dtype="float64")
    assert info["rows"] == 40 and info["features"] == ["a", "b", "c"]
    cols = read_columns(src, ["a", "b", "c", "label"], [], fast=False)
    with h5py.File(tmp_path / "d.h5") as f:
        np.testing.assert_array_equal(f["x"][()], np.stack([cols.numbers[k] for k in "abc"], axis=1))
        np.testing.assert_array_equal(f["y"][()], cols.numbers["label"])


def test_a_bad_cell_in_a_later_block_names_its_line_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(convert, "BLOCK_ROWS", 5)
    rows = _rows(20, np.random.default_rng(1))
    rows[12] = "1,2,oops,0"
    src = tmp_path / "d.csv"
    _write(src, rows)
    with pytest.raises(DataError) as info:
        convert.convert_csv(src, tmp_path / "d.h5")
    assert str(info.value) == f"{src}: line 14, column 'c': expected a number, found 'oops'"
    assert not (tmp_path / "d.h5").exists() and not list(tmp_path.glob(".*partial"))


def test_ragged_row_names_its_line(tmp_path):
    src = tmp_path / "d.csv"
    src.write_text("a,b\n1,2\n3\n")
    with pytest.raises(DataError, match="line 3: 1 fields, expected 2"):
        convert.convert_csv(src, tmp_path / "d.h5")


def test_converted_file_trains_streamed_from_the_cli(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 3))
    lines = [f"{a},{b},{c},{int(a + b > 0)}" for a, b, c in x]
    (tmp_path / "d.csv").write_text("a,b,c,label\n" + "\n".join(lines) + "\n")
    p = subprocess.run(
        [sys.executable, "-m", "nnctl", "data", "convert", "d.csv", "d.h5", "--target", "label", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["rows"] == 200
    (tmp_path / "s.toml").write_text(
        '[data]\ntrain = "d.h5"\nstream = "batches"\nshuffle_buffer = 64\n'
        'normalize = "standard"\n[[model.layers]]\ntype = "Dense"\nunits = 2\n'
        'activation = "softmax"\n[train]\nloss = "sparse_categorical_crossentropy"\n'
        'metrics = ["accuracy"]\nepochs = 20\n'
        'optimizer = { type = "adam", learning_rate = 0.05 }\n'
        '[output]\ncheckpoint = "m.h5"\n'
    )
    t = subprocess.run(
        [sys.executable, "-m", "nnctl", "train", "s.toml", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert t.returncode == 0, t.stderr
    assert json.loads(t.stdout.splitlines()[-1])["metrics"]["accuracy"] > 0.9
    bad = subprocess.run(
        [sys.executable, "-m", "nnctl", "data", "convert", "d.csv", "d.npz"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error: d.npz: expected an .h5")
