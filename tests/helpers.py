"""Shared test helpers: shipped spec paths and training a spec into a temporary folder."""

import pathlib

from nnctl import run, spec

ROOT = pathlib.Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


def load_spec(name: str, tmp_path, *overrides: str) -> dict:
    """A shipped spec with its outputs redirected into tmp_path."""
    s = spec.load(SPECS / name, list(overrides))
    s["output"]["checkpoint"] = str(tmp_path / (s["name"] + ".h5"))
    s["output"]["run_dir"] = str(tmp_path / (s["name"] + ".run"))
    return s


def train_spec(name: str, tmp_path, *overrides: str, **kw) -> tuple[dict, dict]:
    s = load_spec(name, tmp_path, *overrides)
    return s, run.train(s, device="cpu", **kw)
