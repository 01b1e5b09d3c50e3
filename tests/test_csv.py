"""The fast CSV path (np.loadtxt) against the exact slow reader (csv module + float per cell), and the
error messages the slow reader gives when the fast one gives up."""

import csv
import io
import re

import numpy as np
import pytest

from nnctl.data.csvfile import read_columns
from nnctl.errors import DataError

MIXED_ROWS = [
    ["1", "2.5", "-3e-2", '"7"', "setosa"],
    ["42", " 0.1 ", "1E+5", '"-0.000001"', '"virginica"'],
    ["-0", "1e-310", "6.02214076e23", '"3.14159265358979"', "versi color"],
    ["+7", ".5", "5.", "1.7976931348623157e308", " setosa "],
]


def _mixed(newline: str, bom: bool, trailing: bool) -> bytes:
    lines = ["a,b,c,d,label"] + [",".join(r) for r in MIXED_ROWS]
    text = newline.join(lines) + (newline if trailing else "")
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode()


def _reference(data: bytes):
    """What Python's own csv module and float() read: the definition the fast path must match."""
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    body = [r for r in rows[1:] if r]
    return np.array([[float(c) for c in r[:4]] for r in body]), np.array([r[4].strip() for r in body])


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("bom", [False, True])
@pytest.mark.parametrize("trailing", [False, True])
def test_fast_and_slow_paths_give_identical_arrays(tmp_path, newline, bom, trailing):
    path = tmp_path / "mixed.csv"
    path.write_bytes(_mixed(newline, bom, trailing))
    numbers, labels = _reference(path.read_bytes())
    got = {}
    for fast in (True, False):
        cols = read_columns(path, ["a", "b", "c", "d"], ["label"], fast=fast)
        assert cols.fast == fast
        assert cols.header == ["a", "b", "c", "d", "label"]
        got[fast] = cols
        x = np.stack([cols.numbers[k] for k in "abcd"], axis=1)
        assert x.dtype == np.float64
        np.testing.assert_array_equal(x, numbers)  # bit for bit: both parsers are correctly rounded
        assert np.signbit(x[2, 0])  # "-0" keeps its sign
        assert cols.text["label"].tolist() == labels.tolist()
    for k in "abcd":
        assert got[True].numbers[k].tobytes() == got[False].numbers[k].tobytes()


@pytest.mark.parametrize(
    "cells",
    [
        ["0.1", "1e22", "2.2250738585072014e-308", "123456789012345678901234567890"],
        ["4.9e-324", "9007199254740993", "0.30000000000000004", "1e-7"],
    ],
)
def test_fast_path_rounds_like_float(tmp_path, cells):
    path = tmp_path / "r.csv"
    path.write_text("v,y\n" + "".join(f"{c},0\n" for c in cells))
    cols = read_columns(path, ["v", "y"], [])
    assert cols.fast
    assert cols.numbers["v"].tolist() == [float(c) for c in cells]


@pytest.mark.parametrize(
    "body,message",
    [
        ("a,b,y\n1,2,x\n3,oops,y\n", "line 3, column 'b': expected a number, found 'oops'"),
        ("a,b,y\n1,,x\n", "line 2, column 'b': expected a number, found ''"),
        ("a,b,y\n1,inf,x\n", "line 2, column 'b': expected a finite number, found 'inf'"),
        ("a,b,y\n1,nan,x\n", "line 2, column 'b': expected a finite number, found 'nan'"),
        ("a,b,y\n1,2,x\n3,4\n", "line 3: 2 fields, expected 3 (as in the header)"),
        ("a,b,y\n1,2,x,9\n", "line 2: 4 fields, expected 3 (as in the header)"),
        ("a,b,y\n", "no data rows after the header"),
        ("", "empty file; expected a CSV header line"),
    ],
)
def test_slow_path_messages_are_unchanged(tmp_path, body, message):
    path = tmp_path / "d.csv"
    path.write_text(body)
    with pytest.raises(DataError) as info:
        read_columns(path, ["a", "b"], ["y"])
    assert str(info.value) == f"{path}: {message}"


def test_underscore_numbers_take_the_slow_path(tmp_path):
    """``float`` reads 1_000; loadtxt does not: the file goes to the slow path and still reads."""
    path = tmp_path / "u.csv"
    path.write_text("a,y\n1_000,0\n2,1\n")
    cols = read_columns(path, ["a", "y"], [])
    assert not cols.fast and cols.numbers["a"].tolist() == [1000.0, 2.0]


def test_not_utf8_is_refused_naming_the_line(tmp_path):
    path = tmp_path / "l.csv"
    path.write_bytes("a,y\n1,0\n2,caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match="line 3: not UTF-8"):
        read_columns(path, ["a"], ["y"])


def test_missing_cells_read_as_nan_only_where_allowed(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("a,b,y\n1,,0\nNA,2,1\n3,?,0\n")
    cols = read_columns(path, ["a", "b"], ["y"], missing_ok={"a", "b"})
    assert np.isnan(cols.numbers["a"]).tolist() == [False, True, False]
    assert np.isnan(cols.numbers["b"]).tolist() == [True, False, True]
    with pytest.raises(DataError, match="line 3, column 'a': expected a number, found 'NA'"):
        read_columns(path, ["a", "b"], ["y"], missing_ok={"b"})


@pytest.mark.parametrize(
    "header,message",
    [
        ("a,a,y", "header: column name 'a' appears twice (columns 1 and 2); names must be unique"),
        ("a,b,y,", "header: column 4 has no name (a trailing comma)"),
        (",a,y", "header: column 1 has no name (an index column written by pandas? save with index=False)"),
        ("a;b;y", "header 'a;b;y' is one column; nnctl reads comma-separated files and this one looks ';'-separated"),
        ("a\tb\ty", "looks '\\t'-separated"),
    ],
)
def test_a_header_that_cannot_name_its_columns_is_refused(tmp_path, header, message):
    sep = "," if "," in header else header[1]
    width = len(header.split(sep))
    path = tmp_path / "h.csv"
    path.write_text(header + "\n" + "\n".join(sep.join(["1"] * width) for _ in range(3)) + "\n")
    with pytest.raises(DataError, match=re.escape(message)):
        read_columns(path, ["y"], [])


@pytest.mark.parametrize("cell", ["nan", "", "NaN"])
def test_a_missing_class_label_names_its_line(tmp_path, cell):
    from helpers import load_spec
    from nnctl import run

    rows = [f"{i},{i % 2}" for i in range(20)]
    rows[6] = f"6,{cell}"
    path = tmp_path / "labels.csv"
    path.write_text("x,y\n" + "\n".join(rows) + "\n")
    spec = load_spec(
        "iris_mlp.toml",
        tmp_path,
        f'data.train="{path}"',
        'data.target="y"',
        "model.input_shape=[1]",
        'data.features=["x"]',
    )
    with pytest.raises(DataError, match=rf"labels.csv: line 8, column 'y': expected a class label, found '{cell}'"):
        run.train(spec)
