"""evaluate reports a regression's errors in the target's own units beside the (normalised) loss."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from helpers import SPECS
from nnctl.cli.main import app

runner = CliRunner()


def test_regression_errors_are_in_original_units_with_a_normalised_target(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    price = 1000 + 300 * x[:, 0] - 200 * x[:, 1] + rng.normal(scale=20, size=60)  # far from unit scale
    lines = ["a,b,c,price"] + [f"{a},{b},{c},{p}" for (a, b, c), p in zip(x, price)]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    spec = tmp_path / "r.toml"
    spec.write_text(
        f'name = "r"\nseed = 0\n[data]\ntrain = "{tmp_path / "t.csv"}"\ntarget = "price"\n'
        'normalize = "standard"\nnormalize_target = "standard"\n'
        '[[model.layers]]\ntype = "Dense"\nunits = 1\n[train]\nloss = "mse"\nepochs = 3\n'
        f'[output]\ncheckpoint = "{tmp_path / "r.h5"}"\n'
    )  # no metrics listed
    assert runner.invoke(app, ["train", str(spec), "--quiet"]).exit_code == 0
    r = runner.invoke(app, ["evaluate", str(tmp_path / "r.h5"), "--data", str(tmp_path / "t.csv"), "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    r = runner.invoke(app, ["predict", str(tmp_path / "r.h5"), str(tmp_path / "t.csv")])
    pred = np.loadtxt(r.stdout.splitlines()[1:])
    err = pred - price
    assert got["mse"] == pytest.approx(np.mean(err**2), rel=1e-4)
    assert got["mae"] == pytest.approx(np.mean(np.abs(err)), rel=1e-4)
    assert got["rmse"] == pytest.approx(np.sqrt(np.mean(err**2)), rel=1e-4)
    # the loss stays in the normalised units the model was trained in
    assert got["loss"] == pytest.approx(np.mean(err**2) / np.var(price), rel=1e-3)


def test_time_series_evaluation_puts_the_naive_baseline_beside_the_model(tmp_path):
    out = tmp_path / "s.h5"
    assert (
        runner.invoke(
            app, ["train", str(SPECS / "sine_lstm.toml"), "--out", str(out), "--epochs", "1", "--quiet"]
        ).exit_code
        == 0
    )
    r = runner.invoke(app, ["evaluate", str(out), "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    keys = list(got)
    for k in ("mse", "mae", "rmse", "naive_mse", "naive_mae", "naive_rmse"):
        assert k in got, keys
    assert got["rmse"] == pytest.approx(np.sqrt(got["mse"])) and got["naive_rmse"] == pytest.approx(
        np.sqrt(got["naive_mse"])
    )
    assert keys.index("loss") < keys.index("mse") < keys.index("naive_mse")
