"""nnctl/starter: the spec ``init`` builds as data is the spec its text reads back to, it validates, and the
classes its comment lists are the ones the data layer then encodes, in that order."""

from __future__ import annotations

import csv
import pathlib
import tomllib

import numpy as np
import pytest

from nnctl import spec as spec_mod
from nnctl.data import load_dataset
from nnctl.starter import inspect_data, starter_spec
from nnctl.starter.template import render, starter_document


def _csv(path: pathlib.Path, labels, n=40, seed=0):
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "colour", "label"])
        for i in range(n):
            w.writerow(
                [
                    f"{rng.normal():.3f}",
                    "" if i % 9 == 4 else f"{rng.normal():.3f}",
                    "rgb"[i % 3],
                    labels[i % len(labels)],
                ]
            )


def _data_files(tmp: pathlib.Path) -> list[pathlib.Path]:
    rng = np.random.default_rng(1)
    _csv(tmp / "pets.csv", ["dog", "cat", "émeu"])
    _csv(tmp / "yesno.csv", ["yes", "no"])
    _csv(tmp / "ids.csv", [12, 3, 7, 40])  # integer classes: numeric order, not text order
    np.savez(tmp / "img.npz", x=rng.integers(0, 255, size=(30, 12, 12, 1)).astype(np.uint8), y=np.arange(30) % 3)
    np.savez(tmp / "reg.npz", features=rng.normal(size=(30, 3, 2)), labels=rng.normal(size=(30, 2)))
    return [tmp / n for n in ("pets.csv", "yesno.csv", "ids.csv", "img.npz", "reg.npz")]


def test_the_text_reads_back_to_the_spec_built_as_data_and_validates(tmp_path):
    for path in _data_files(tmp_path):
        doc = starter_document(inspect_data(path), tmp_path, path.name)
        text = render(doc)
        assert tomllib.loads(text) == doc.spec, path.name
        assert text == starter_spec(path, tmp_path, source_arg=path.name)
        spec_mod.validate(tomllib.loads(text), str(path), base_dir=tmp_path)
        for line in text.splitlines():  # every comment is a comment: nothing but keys, tables and '#' lines
            assert not line or line.startswith(("#", "[")) or " = " in line, line


@pytest.mark.parametrize("name, classes", [("pets.csv", ["cat", "dog", "émeu"]), ("ids.csv", [3, 7, 12, 40])])
def test_the_classes_comment_is_the_data_layers_order(tmp_path, name, classes):
    _data_files(tmp_path)
    text = starter_spec(tmp_path / name, tmp_path)
    assert f"# classes in output order: {', '.join(map(str, classes))}" in text
    s = spec_mod.validate(tomllib.loads(text), str(tmp_path / "spec.toml"), base_dir=tmp_path)
    prep = load_dataset(s, with_test=False).prep
    assert [int(c) if isinstance(classes[0], int) else c for c in prep.classes.tolist()] == classes


def test_comments_line_up_and_layers_carry_theirs(tmp_path):
    path = _data_files(tmp_path)[3]
    text = starter_spec(path, tmp_path)
    assert '\nrescale = "1/255"                       # 0-255 pixels to 0-1' in text
    assert "\n[[model.layers]]                       # 3x3 filters find local patterns" in text
    assert "\n# input_shape = [12, 12, 1] is read from the data\n" in text
