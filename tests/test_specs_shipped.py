"""Every spec in specs/ validates and builds (nnctl check), so a broken shipped spec fails the suite."""

import pathlib

import pytest
from typer.testing import CliRunner

from nnctl.cli.main import app

SPECS = sorted((pathlib.Path(__file__).resolve().parent.parent / "specs").glob("*.toml"))


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_shipped_spec_checks(path):
    r = CliRunner().invoke(app, ["check", str(path), "--json"])
    assert r.exit_code == 0, r.output


def test_every_spec_is_trained_somewhere_in_the_suite():
    tests = "".join(p.read_text() for p in pathlib.Path(__file__).parent.glob("test_*.py"))
    untrained = [p.name for p in SPECS if f'"{p.name}"' not in tests]
    assert not untrained, f"shipped specs no test trains: {untrained}"
