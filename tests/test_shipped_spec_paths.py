"""Every spec under specs/, in any folder, validates, builds (nnctl check) and names data that is shipped.

A spec pointing at a placeholder (``imagenet/train``) cannot train as shipped; this fails the suite for it.
The top-level specs are built by test_specs_shipped.py and the full-size zoo by test_zoo.py (with and
without their tops); this file builds every other one, and checks that the three together cover all.
"""

import pathlib

import pytest
from typer.testing import CliRunner

from helpers import SPECS
from nnctl import spec as spec_mod
from nnctl.cli.main import app

EVERY = sorted(
    p
    for ext in ("toml", "yaml", "yml", "json")
    for p in SPECS.rglob(f"*.{ext}")
    if not any(part == "runs" or part.endswith(".run") for part in p.relative_to(SPECS).parts)
)
# (runs/ and *.run/ folders hold what training wrote, e.g. a run's spec.json, not shipped specs)
TOP_LEVEL = {p for p in EVERY if p.parent == SPECS}  # test_specs_shipped.py
FULL_ZOO = {p for p in EVERY if p.parent.name == "zoo" and not p.stem.endswith("_small")}  # test_zoo.py
OTHERS = sorted(set(EVERY) - TOP_LEVEL - FULL_ZOO)


def rel(p: pathlib.Path) -> str:
    return str(p.relative_to(SPECS))


def test_the_specs_are_found_in_subfolders_too():
    assert any(p.parent != SPECS for p in EVERY) and OTHERS


def test_the_full_size_zoo_is_the_one_test_zoo_checks():
    from test_zoo import COUNTS

    assert sorted(p.stem for p in FULL_ZOO) == sorted(COUNTS)


@pytest.mark.parametrize("path", OTHERS, ids=[rel(p) for p in OTHERS])
def test_spec_in_a_subfolder_checks(path):
    r = CliRunner().invoke(app, ["check", str(path), "--json"])
    assert r.exit_code == 0, r.output


def data_paths(spec) -> dict[str, str]:
    """The files and folders a validated spec reads its data from (resolved against the spec's folder)."""
    data = spec.data
    out = {key: getattr(data, key) for key in ("train", "test") if getattr(data, key)}
    validation = data.validation
    if isinstance(validation, str):
        out["validation"] = validation
    elif validation is not None and validation.path:
        out["validation.path"] = validation.path
    return out


@pytest.mark.parametrize("path", EVERY, ids=[rel(p) for p in EVERY])
def test_every_data_path_a_spec_names_exists(path):
    s = spec_mod.load(path)
    paths = data_paths(s)
    assert "train" in paths
    missing = {key: p for key, p in paths.items() if not pathlib.Path(p).exists()}
    assert not missing, f"{rel(path)} names data that is not shipped: {missing}"
    for p in paths.values():  # shipped with the project, not somewhere on this machine
        assert pathlib.Path(p).resolve().is_relative_to(SPECS.parent), p
