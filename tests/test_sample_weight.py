"""data.sample_weight: per-sample weights from a CSV column or an npz/HDF5 array scale the training loss and the
logged training loss as Keras does (sum_i w_i l_i / N), combine with train.class_weight, and are refused when
they are not N non-negative finite numbers."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from nnctl import run, spec
from nnctl.cli.main import app
from tests.helpers import checkpoint_arrays

ZERO = {"kernel_initializer": "zeros", "bias_initializer": "zeros"}


def _write_csv(path, header, rows):
    path.write_text(",".join(header) + "\n" + "".join(",".join(str(c) for c in r) + "\n" for r in rows))


def _spec(tmp_path, data, layers, loss, tag, **train):
    raw = {
        "name": "sw",
        "seed": 0,
        "dtype": "float64",
        "data": data,
        "model": {"layers": layers},
        "train": {
            "loss": loss,
            "optimizer": {"type": "sgd", "learning_rate": 0.05},
            "epochs": 1,
            "batch_size": "full",
            **train,
        },
        "output": {"checkpoint": str(tmp_path / f"{tag}.h5")},
    }
    return spec.validate(raw, f"{tag}.toml")


def test_logged_loss_is_the_weighted_mean_of_a_csv_column(tmp_path):
    """Zero-initialised Dense: predictions are 0, so MSE terms are y_i^2 and the logged loss of one full batch
    is sum_i w_i y_i^2 / N; the weight column is not a feature (the model has 2 inputs, not 3)."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 2)), rng.normal(size=40)
    w = rng.uniform(0, 3, size=40)
    w[::7] = 0.0
    csv = tmp_path / "r.csv"
    _write_csv(
        csv,
        ["a", "wt", "b", "y"],
        [(repr(float(a)), repr(float(c)), repr(float(b)), repr(float(t))) for (a, b), c, t in zip(x, w, y)],
    )
    s = _spec(
        tmp_path,
        {"train": str(csv), "target": "y", "sample_weight": "wt"},
        [{"type": "Dense", "units": 1, **ZERO}],
        "mse",
        "reg",
    )
    done = run.train(s)
    assert done["metrics"]["loss"] == pytest.approx(float((w * y**2).sum() / 40), rel=1e-12)
    kernel = [v for k, v in checkpoint_arrays(s.output.checkpoint, ("weights",)).items() if "kernel" in k]
    assert kernel[0].shape == (2, 1)
    plain = run.train(
        _spec(
            tmp_path,
            {"train": str(csv), "target": "y", "features": ["a", "b"]},
            [{"type": "Dense", "units": 1, **ZERO}],
            "mse",
            "plain",
        )
    )
    assert plain["metrics"]["loss"] == pytest.approx(float((y**2).mean()), rel=1e-12)


def test_sample_and_class_weights_multiply(tmp_path):
    """Sigmoid of a zero-initialised Dense is 0.5, so every BCE term is log 2 and the logged loss is
    log 2 * sum_i class_weight[y_i] * sample_weight_i / N (the npz array ``w``)."""
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(30, 3)), (rng.uniform(size=30) < 0.3).astype(np.int64)
    w = rng.uniform(0, 2, size=30)
    npz = tmp_path / "c.npz"
    np.savez(npz, x=x, y=y, w=w)
    s = _spec(
        tmp_path,
        {"train": str(npz), "sample_weight": "w"},
        [{"type": "Dense", "units": 1, "activation": "sigmoid", **ZERO}],
        "binary_crossentropy",
        "cls",
        class_weight={"0": 0.5, "1": 4.0},
    )
    done = run.train(s)
    cw = np.where(y == 1, 4.0, 0.5)
    assert done["metrics"]["loss"] == pytest.approx(float(np.log(2) * (cw * w).sum() / 30), rel=1e-9)


def test_zero_weights_train_as_if_the_rows_were_dropped(tmp_path):
    """Batches of one row, no shuffle, plain SGD (no momentum, no decay, constant rate), float64: a row of weight
    0 has a gradient of exactly 0 (0 * finite at every layer), so its step p - lr * 0 leaves every parameter
    bit-for-bit unchanged, and a row of weight 1 gives the unweighted step. Training on all rows with weights
    1, 0, 1, 0, ... must end with exactly the parameters of training on the weight-1 rows alone."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(48, 3))
    y = np.sin(x @ np.array([1.0, -2.0, 0.5]))[:, None]
    w = np.tile([1.0, 0.0], 24)
    keep = w == 1
    np.savez(tmp_path / "all.npz", x=x, y=y, w=w)
    np.savez(tmp_path / "kept.npz", x=x[keep], y=y[keep])
    layers = [{"type": "Dense", "units": 8, "activation": "tanh"}, {"type": "Dense", "units": 1}]
    cfg = {"epochs": 3, "batch_size": 1, "shuffle": False}
    weighted = _spec(tmp_path, {"train": str(tmp_path / "all.npz"), "sample_weight": "w"}, layers, "mse", "all", **cfg)
    dropped = _spec(tmp_path, {"train": str(tmp_path / "kept.npz")}, layers, "mse", "kept", **cfg)
    lw, ld = run.train(weighted), run.train(dropped)
    a = checkpoint_arrays(weighted.output.checkpoint, ("weights",))
    b = checkpoint_arrays(dropped.output.checkpoint, ("weights",))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    # the logged loss is over all 48 rows: half the mean over the 24 that count
    assert lw["metrics"]["loss"] == pytest.approx(ld["metrics"]["loss"] / 2, rel=1e-12)


def test_weights_follow_the_validation_split(tmp_path):
    """Weights 0 on every row with y = 1: after any split the training loss counts only rows with y = 0, each
    with MSE term y^2 = 0 against a zero prediction, so the logged loss is exactly 0 whatever rows were kept."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(50, 2))
    y = (rng.uniform(size=50) < 0.5).astype(np.float64)
    np.savez(tmp_path / "v.npz", x=x, y=y[:, None], w=1.0 - y)
    s = _spec(
        tmp_path,
        {"train": str(tmp_path / "v.npz"), "sample_weight": "w", "validation": {"split": 0.3}, "subset": 40},
        [{"type": "Dense", "units": 1, **ZERO}],
        "mse",
        "val",
    )
    done = run.train(s)
    assert done["metrics"]["loss"] == 0.0
    assert done["metrics"]["val_loss"] > 0.0  # validation is unweighted


def _cli_error(tmp_path, data, tag):
    raw = {
        "name": "e",
        "seed": 0,
        "data": data,
        "model": {"layers": [{"type": "Dense", "units": 1}]},
        "train": {"loss": "mse", "epochs": 1},
        "output": {"checkpoint": str(tmp_path / f"{tag}.h5")},
    }
    path = tmp_path / f"{tag}.json"
    path.write_text(json.dumps(raw))
    r = CliRunner().invoke(app, ["train", str(path)])
    assert r.exit_code == 2, r.output
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.output, r.stderr
    return lines[0]


@pytest.mark.parametrize(
    "cell, found", [("-1.5", "-1.5 at line 4"), ("inf", "inf at line 4"), ("nan", "nan at line 4")]
)
def test_bad_weight_cells_exit_2_naming_file_field_and_line(tmp_path, cell, found):
    csv = tmp_path / "bad.csv"
    _write_csv(csv, ["a", "w", "y"], [(1, 1, 0.5), (2, 0.5, 1.5), (3, cell, 2.5), (4, 2, 3.0)])
    line = _cli_error(tmp_path, {"train": str(csv), "target": "y", "sample_weight": "w"}, "c")
    assert "bad.csv" in line and "data.sample_weight" in line and found in line, line


def test_missing_or_misshapen_weights_exit_2(tmp_path):
    csv = tmp_path / "t.csv"
    _write_csv(csv, ["a", "y"], [(1, 2), (3, 4)])
    line = _cli_error(tmp_path, {"train": str(csv), "target": "y", "sample_weight": "wt"}, "nocol")
    assert "t.csv" in line and "data.sample_weight" in line and "'wt'" in line and "a, y" in line, line
    np.savez(tmp_path / "a.npz", x=np.ones((5, 2)), y=np.ones((5, 1)), w=np.ones(4))
    line = _cli_error(tmp_path, {"train": str(tmp_path / "a.npz"), "sample_weight": "w"}, "short")
    assert "a.npz" in line and "data.sample_weight" in line and "expected 5 weights" in line and "found 4" in line
    line = _cli_error(tmp_path, {"train": str(tmp_path / "a.npz"), "sample_weight": "weights"}, "noarr")
    assert "a.npz" in line and "'weights'" in line and "found x, y, w" in line, line
    np.savez(tmp_path / "n.npz", x=np.ones((3, 2)), y=np.ones((3, 1)), w=np.array([1.0, -0.0, -2.0]))
    line = _cli_error(tmp_path, {"train": str(tmp_path / "n.npz"), "sample_weight": "w"}, "neg")
    assert "n.npz" in line and "-2.0 at row 2" in line, line


def test_schema_lists_sample_weight():
    r = CliRunner().invoke(app, ["schema"])
    assert r.exit_code == 0 and "sample_weight" in json.dumps(json.loads(r.stdout))


@pytest.mark.mpi
def test_two_ranks_with_weights_equal_one_process(tmp_path):
    """Each rank weights its share of the global batch by its own rows' weights (the strategy's row shard):
    2 ranks train the weights of 1 process. 301 rows in batches of 64 leave a ragged last batch (22 + 23)."""
    dist = pytest.importorskip("test_distributed")
    if not dist.HAVE_MPI4PY or dist.MPIEXEC is None or dist.NNCTL is None:
        pytest.skip("needs mpi4py and mpiexec")
    spec = dist.make_spec(tmp_path, "float64")
    lines = (tmp_path / "train.csv").read_text().splitlines()
    w = np.random.default_rng(5).uniform(0, 3, size=len(lines) - 1).round(4)
    (tmp_path / "train.csv").write_text(
        "\n".join([lines[0] + ",w"] + [f"{r},{v}" for r, v in zip(lines[1:], w)]) + "\n"
    )
    spec.write_text(spec.read_text().replace('target = "label"', 'target = "label"\nsample_weight = "w"'))
    one = dist.events(dist.train(spec, None, "-o", "one.h5"))
    two = dist.events(dist.train(spec, 2, "-o", "two.h5"))
    dist.assert_same_weights(tmp_path / "one.h5", tmp_path / "two.h5", 1e-9)
    for a, b in zip(one[:-1], two[:-1]):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-9)
    # and the weights matter: an unweighted run ends elsewhere
    spec.write_text(spec.read_text().replace('sample_weight = "w"', 'features = ["a", "b", "c", "d", "e"]'))
    plain = dist.events(dist.train(spec, None, "-o", "plain.h5"))
    assert plain[-2]["loss"] != pytest.approx(one[-2]["loss"], rel=1e-6)
