"""nnctl lr-find: the sweep leaves the model as it was, its suggestion lies inside the sweep, the CLI writes
its PNG and pure JSON and no checkpoint."""

import json
import subprocess
import sys

import numpy as np
import pytest

from helpers import SPECS, load_spec
from nnctl import backend as B
from nnctl import lr_find, run
from nnctl.data import load_dataset
from nnctl.train import Trainer


def _trainer(spec):
    ds = load_dataset(spec)
    model = run.model_for_data(spec, ds)
    model.to_device()
    trainer = Trainer(
        model,
        run.make_loss(spec),
        run.make_optimizer(spec),
        spec.train,
        ds.prep.task,
        ds.prep.n_classes(model.output_shape[-1]),
        spec.seed,
    )
    return trainer, ds


def test_sweep_leaves_the_model_untouched_and_suggests_a_rate_inside_it(tmp_path):
    spec = load_spec("digits_mlp.toml", tmp_path, "data.subset=300")
    trainer, ds = _trainer(spec)
    model = trainer.model
    before = B.to_numpy(model.flat_params).copy()
    state = {k: B.to_numpy(v).copy() for k, v in model.named_state().items()}
    slots = {k: B.to_numpy(v).copy() for k, v in trainer.optimizer.slots.items()}
    rngs = model.rng_states()
    result = lr_find.sweep(trainer, ds.x_train, ds.y_train, start=1e-6, end=1.0, steps=60)
    np.testing.assert_array_equal(B.to_numpy(model.flat_params), before)
    for k, v in model.named_state().items():
        np.testing.assert_array_equal(B.to_numpy(v), state[k])
    for k, v in trainer.optimizer.slots.items():
        np.testing.assert_array_equal(B.to_numpy(v), slots[k])
    assert trainer.optimizer.iterations == 0 and model.rng_states() == rngs
    rates = np.array(result["rates"])
    np.testing.assert_allclose(rates, 1e-6 * 1e6 ** (np.arange(len(rates)) / 59))  # exponential from start
    assert rates[0] <= result["suggestion"] <= rates[-1]
    assert len(result["losses"]) == len(result["smoothed"]) == result["steps"]


def test_sgd_on_least_squares_diverges_past_the_stability_limit(tmp_path):
    """MSE of a linear model on unit-variance features has Hessian 2 E[x x^T] ~ 2 I: SGD diverges for lr > 1,
    so the sweep stops there and the suggestion lies below it."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=2000)
    np.savez(tmp_path / "ls.npz", x=x, y=y[:, None])
    from nnctl import spec as spec_mod

    s = spec_mod.validate(
        {
            "name": "ls",
            "data": {"train": str(tmp_path / "ls.npz")},
            "model": {"layers": [{"type": "Dense", "units": 1}]},
            "train": {"loss": "mse", "optimizer": "sgd", "batch_size": 200},
            "output": {"checkpoint": str(tmp_path / "ls.h5")},
        },
        "ls.toml",
    )
    result = lr_find.lr_find(s, steps=200, start=1e-4, end=100.0)
    assert result["stopped_early"] and 0.5 < result["rates"][-1] < 10.0
    assert 1e-4 <= result["suggestion"] < 1.0


def test_cli_writes_the_png_and_pure_json_and_no_checkpoint(tmp_path):
    png = tmp_path / "curve.png"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "nnctl",
            "lr-find",
            SPECS / "digits_mlp.toml",
            "--steps",
            "40",
            "--set",
            "data.subset=200",
            "--set",
            f"output.checkpoint={tmp_path / 'd.h5'}",
            "-o",
            png,
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["png"] == str(png) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out["rates"][0] <= out["suggestion"] <= out["rates"][-1]
    assert not (tmp_path / "d.h5").exists()
    text = subprocess.run(
        [
            sys.executable,
            "-m",
            "nnctl",
            "lr-find",
            SPECS / "digits_mlp.toml",
            "--steps",
            "30",
            "--set",
            "data.subset=200",
            "--no-png",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert text.returncode == 0, text.stderr
    assert "suggested learning_rate" in text.stdout and "|" in text.stdout


def test_cli_refuses_a_bad_sweep(tmp_path):
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "nnctl",
            "lr-find",
            SPECS / "digits_mlp.toml",
            "--start",
            "1",
            "--end",
            "0.1",
            "--no-png",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: lr-find: --start")


@pytest.mark.parametrize("bad", [[], [float("nan")] * 20])
def test_suggest_needs_enough_finite_points(bad):
    assert lr_find.suggest(np.logspace(-5, 0, len(bad)), bad) is None
