"""Anomaly detection with autoencoders: per-row reconstruction errors, the threshold from the training rows only,
flags in predict, precision and recall in evaluate; references computed here with NumPy from the stored weights."""

import csv
import json

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from helpers import outputs_at
from nnctl import anomaly
from nnctl.checkpoint import Checkpoint, store_anomaly
from nnctl.cli.main import app
from nnctl.errors import CheckpointError

COLS = ["a", "b", "c", "d"]


def _rows(rng, n, shift=0.0):
    """Rows near a 2-D plane in 4-D (an autoencoder with a 2-unit code fits them), plus ``shift``."""
    z = rng.normal(size=(n, 2))
    x = np.c_[z[:, 0], z[:, 1], z[:, 0] + z[:, 1], z[:, 0] - 0.5 * z[:, 1]] + rng.normal(0, 0.05, (n, 4))
    return x + shift


def _write(path, x, labels=None):
    head = COLS + (["is_anomaly"] if labels is not None else [])
    lines = [",".join(head)]
    for i, row in enumerate(x):
        lines.append(",".join(f"{v:.6f}" for v in row) + (f",{int(labels[i])}" if labels is not None else ""))
    path.write_text("\n".join(lines) + "\n")


def _spec(tmp_path, test="test.csv", quantile=0.9, **data):
    spec = {
        "seed": 3,
        "name": "ae",
        "data": {
            "train": "train.csv",
            "test": test,
            "validation": "val.csv",
            "target": "input",
            "normalize": "standard",
            "anomaly_label": "is_anomaly",
            **data,
        },
        "model": {
            "layers": [
                {"type": "Dense", "units": 6, "activation": "tanh", "name": "enc"},
                {"type": "Dense", "units": 2, "name": "code"},
                {"type": "Dense", "units": 4, "name": "out"},
            ]
        },
        "train": {
            "loss": "mse",
            "optimizer": {"type": "adam", "learning_rate": 0.02},
            "epochs": 15,
            "batch_size": 16,
            "anomaly_quantile": quantile,
        },
        "output": {"checkpoint": str(tmp_path / "ae.h5")},
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    return tmp_path / "spec.json"


@pytest.fixture()
def data(tmp_path):
    """train.csv (ordinary rows, a label column of zeros), val.csv (shifted: not training rows), test.csv and
    other.csv (ordinary rows with planted far-off anomalies)."""
    rng = np.random.default_rng(0)
    x_train = _rows(rng, 120)
    _write(tmp_path / "train.csv", x_train, np.zeros(120))
    _write(tmp_path / "val.csv", _rows(rng, 30, shift=2.5), np.zeros(30))
    for name, n_bad in (("test.csv", 6), ("other.csv", 12)):
        x, y = _rows(rng, 60), np.zeros(60, bool)
        bad = rng.choice(60, n_bad, replace=False)
        x[bad] = rng.normal(0, 3, (n_bad, 4))  # off the plane
        y[bad] = True
        _write(tmp_path / name, x, y)
    return tmp_path, x_train


def _cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _train(spec_path):
    r = _cli("train", spec_path, "--json")
    assert r.exit_code == 0, r.output
    return r


def _numpy_errors(ckpt, x, x_train):
    """Per-row errors by hand: standardise with the training file's statistics, the three Dense layers in
    float64 from the checkpoint's weights, mean squared difference per row."""
    with h5py.File(ckpt, "r") as f:
        w = {f"{n}/{k}": f["weights"][n][k][()].astype(np.float64) for n in f["weights"] for k in f["weights"][n]}
    mu, sd = x_train.mean(axis=0), x_train.std(axis=0)
    xn = (x - mu) / sd
    h = np.tanh(xn @ w["enc/kernel"] + w["enc/bias"])
    out = (h @ w["code/kernel"] + w["code/bias"]) @ w["out/kernel"] + w["out/bias"]
    return np.mean((out - xn) ** 2, axis=1)


def _read(path):
    rows = list(csv.reader(open(path)))
    return rows[0], rows[1:]


def _x(path):
    head, rows = _read(path)
    return np.array([[float(v) for v in r[:4]] for r in rows]), np.array([r[4] == "1" for r in rows])


# -- the threshold: training rows only --------------------------------------------------------------
def test_threshold_is_the_quantile_of_the_training_rows_errors(data):
    tmp, x_train = data
    _train(_spec(tmp, quantile=0.9))
    info = Checkpoint(tmp / "ae.h5").anomaly
    e_train = _numpy_errors(tmp / "ae.h5", x_train, x_train)
    assert info["rows"] == 120 and info["quantile"] == 0.9
    np.testing.assert_allclose(info["threshold"], np.quantile(e_train, 0.9), rtol=1e-4)
    # validation and test rows are not in it: with them the quantile is another number
    x_val, _ = _x(tmp / "val.csv")
    x_test, _ = _x(tmp / "test.csv")
    everything = _numpy_errors(tmp / "ae.h5", np.concatenate([x_train, x_val, x_test]), x_train)
    assert abs(np.quantile(everything, 0.9) - info["threshold"]) > 0.05 * info["threshold"]


def test_changing_the_test_data_does_not_move_the_threshold(data):
    tmp, _ = data
    _train(_spec(tmp, test="test.csv"))
    first = Checkpoint(tmp / "ae.h5").anomaly["threshold"]
    (tmp / "ae.h5").unlink()
    _train(_spec(tmp, test="other.csv"))
    assert Checkpoint(tmp / "ae.h5").anomaly["threshold"] == first
    for extra in ([], ["--data", tmp / "test.csv"]):
        r = _cli("evaluate", tmp / "ae.h5", "--json", *extra)
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["anomaly_threshold"] == first
    # evaluate --anomaly-quantile refits on the training rows named by the stored spec: the same number
    r = _cli("evaluate", tmp / "ae.h5", "--json", "--anomaly-quantile", "0.9", "--data", tmp / "other.csv")
    assert r.exit_code == 0, r.output
    np.testing.assert_allclose(json.loads(r.stdout)["anomaly_threshold"], first, rtol=1e-6)


def test_evaluate_anomaly_quantile_stores_a_new_threshold(data):
    tmp, x_train = data
    spec = json.loads(_spec(tmp).read_text())
    del spec["train"]["anomaly_quantile"]
    (tmp / "spec.json").write_text(json.dumps(spec))
    _train(tmp / "spec.json")
    assert Checkpoint(tmp / "ae.h5").anomaly is None
    r = _cli("evaluate", tmp / "ae.h5", "--json", "--anomaly-quantile", "0.75")
    assert r.exit_code == 0, r.output
    stored = Checkpoint(tmp / "ae.h5").anomaly
    np.testing.assert_allclose(
        stored["threshold"], np.quantile(_numpy_errors(tmp / "ae.h5", x_train, x_train), 0.75), rtol=1e-4
    )
    assert json.loads(r.stdout)["anomaly_threshold"] == stored["threshold"]


# -- evaluate: errors, flags, precision and recall ---------------------------------------------------
def test_precision_recall_against_hand_counts():
    flagged = np.array([1, 1, 0, 0, 1, 0, 1], bool)
    truth = np.array([1, 0, 1, 0, 1, 0, 0], bool)
    r = anomaly.precision_recall(flagged, truth)
    # flagged and true: rows 0, 4; flagged, not true: 1, 6; true, not flagged: 2; neither: 3, 5
    assert (r["anomaly_tp"], r["anomaly_fp"], r["anomaly_fn"], r["anomaly_tn"]) == (2, 2, 1, 2)
    assert r["anomaly_precision"] == pytest.approx(2 / 4) and r["anomaly_recall"] == pytest.approx(2 / 3)
    assert r["anomaly_f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    none = anomaly.precision_recall(np.zeros(3, bool), np.array([0, 1, 0], bool))
    assert none["anomaly_precision"] == 0.0 and none["anomaly_recall"] == 0.0


def test_evaluate_reports_errors_and_scores_the_flagged_rows(data):
    tmp, x_train = data
    _train(_spec(tmp))
    r = _cli("evaluate", tmp / "ae.h5", "--json", "--errors", tmp / "errors.csv")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    x, truth = _x(tmp / "test.csv")
    e = _numpy_errors(tmp / "ae.h5", x, x_train)
    t = Checkpoint(tmp / "ae.h5").anomaly["threshold"]
    flagged = e > t
    tp, fp, fn = int((flagged & truth).sum()), int((flagged & ~truth).sum()), int((~flagged & truth).sum())
    assert (out["anomaly_tp"], out["anomaly_fp"], out["anomaly_fn"]) == (tp, fp, fn)
    assert out["anomaly_precision"] == pytest.approx(tp / (tp + fp))
    assert out["anomaly_recall"] == pytest.approx(tp / (tp + fn))
    assert out["anomalies_flagged"] == int(flagged.sum()) and out["anomalies_true"] == 6
    assert out["error_mean"] == pytest.approx(e.mean(), rel=1e-4)
    assert out["error_max"] == pytest.approx(e.max(), rel=1e-4)
    assert out["error_median"] == pytest.approx(np.median(e), rel=1e-3)
    head, rows = _read(tmp / "errors.csv")
    assert head == ["row", "error", "anomaly", "label"]
    assert [int(r[0]) for r in rows] == list(range(60))
    np.testing.assert_allclose([float(r[1]) for r in rows], e, rtol=1e-4)
    assert [r[2] for r in rows] == ["true" if f else "false" for f in flagged]
    assert [r[3] == "1" for r in rows] == list(truth)
    assert out["anomaly_recall"] > 0.5  # the planted rows are far off the plane the model learned


def test_an_autoencoder_without_threshold_or_labels_reports_errors_only(data):
    tmp, _ = data
    spec = json.loads(_spec(tmp).read_text())
    del spec["train"]["anomaly_quantile"], spec["data"]["anomaly_label"]
    spec["model"]["layers"][-1]["units"] = 5
    (tmp / "spec.json").write_text(json.dumps(spec))
    _train(tmp / "spec.json")
    out = json.loads(_cli("evaluate", tmp / "ae.h5", "--json").stdout)
    assert "error_mean" in out and "anomaly_threshold" not in out and "anomaly_precision" not in out
    # the label column was an input here (no data.anomaly_label): five columns in
    assert Checkpoint(tmp / "ae.h5").spec["model"]["input_shape"] == [5]


def test_the_label_column_is_never_an_input(data):
    tmp, _ = data
    _train(_spec(tmp))
    assert Checkpoint(tmp / "ae.h5").spec["model"]["input_shape"] == [4]


# -- predict: error and flag per row -----------------------------------------------------------------
def test_predict_flags_exactly_the_rows_above_the_threshold(data):
    tmp, x_train = data
    _train(_spec(tmp))
    x, _ = _x(tmp / "other.csv")
    e = _numpy_errors(tmp / "ae.h5", x, x_train)
    t = float(np.median(e))  # half the rows above it: a threshold that flags many, set by hand
    store_anomaly(tmp / "ae.h5", {"quantile": 0.5, "threshold": t, "rows": 1})
    r = _cli("predict", tmp / "ae.h5", tmp / "other.csv")
    assert r.exit_code == 0, r.output
    head, rows = list(csv.reader(r.stdout.splitlines()))[0], list(csv.reader(r.stdout.splitlines()))[1:]
    assert head == ["error", "anomaly"] and len(rows) == 60
    np.testing.assert_allclose([float(v[0]) for v in rows], e, rtol=1e-4)
    assert [v[1] for v in rows] == ["true" if v else "false" for v in e > t]
    lines = _cli("predict", tmp / "ae.h5", tmp / "other.csv", "-f", "jsonl").stdout.splitlines()
    assert [json.loads(line)["anomaly"] for line in lines] == list(e > t)
    rec = _cli("predict", tmp / "ae.h5", tmp / "other.csv", "--reconstruct")  # values, as before
    assert rec.exit_code == 0 and rec.stdout.splitlines()[0] == "a,b,c,d"


def test_store_anomaly_keeps_the_rest_of_the_checkpoint(data):
    tmp, _ = data
    _train(_spec(tmp))
    before = Checkpoint(tmp / "ae.h5")
    store_anomaly(tmp / "ae.h5", {"quantile": 0.5, "threshold": 1.25, "rows": 3})
    after = Checkpoint(tmp / "ae.h5")
    assert after.anomaly == {"quantile": 0.5, "threshold": 1.25, "rows": 3}
    assert after.spec == before.spec and after.resume["info"] == before.resume["info"]
    assert all(np.array_equal(before.weights[k], after.weights[k]) for k in before.weights)
    assert not list(tmp.glob("*.tmp*"))


def test_a_corrupt_threshold_is_refused(data):
    tmp, _ = data
    _train(_spec(tmp))
    store_anomaly(tmp / "ae.h5", {"quantile": 2, "threshold": "high"})
    with pytest.raises(CheckpointError, match="/anomaly"):
        anomaly.stored(Checkpoint(tmp / "ae.h5"))
    r = _cli("predict", tmp / "ae.h5", tmp / "test.csv")
    assert r.exit_code == 2 and r.stderr.count("error:") == 1 and "/anomaly" in r.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["predict", "{ae}", "{test}", "-f", "npy"], "--format"),
        (["predict", "{ae}", "{test}", "--score", "--reconstruct"], "--score"),
        (["evaluate", "{ae}", "--anomaly-quantile", "1.5"], "--anomaly-quantile"),
        (["evaluate", "{ae}", "--confusion-matrix", "{tmp}/cm.png"], "is an autoencoder; a confusion matrix needs"),
    ],
)
def test_cli_mistakes_are_one_error_line(data, args, message):
    tmp, _ = data
    _train(_spec(tmp))
    r = _cli(*[a.format(ae=tmp / "ae.h5", test=tmp / "test.csv", tmp=tmp) for a in args])
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("error:") and r.stderr.count("\n") == 1 and message in r.stderr


def test_anomaly_keys_need_an_autoencoder(data):
    tmp, _ = data
    spec = json.loads(_spec(tmp).read_text())
    spec["data"]["target"] = "d"
    (tmp / "spec.json").write_text(json.dumps(spec))
    r = _cli("check", tmp / "spec.json")
    assert r.exit_code == 2
    assert "train.anomaly_quantile" in r.stderr and "data.anomaly_label" in r.stderr


def test_score_refuses_a_supervised_model(data):
    tmp, _ = data
    spec = json.loads(_spec(tmp).read_text())
    spec["data"].update(target="d", features=["a", "b", "c"])
    del spec["train"]["anomaly_quantile"], spec["data"]["anomaly_label"]
    spec["model"]["layers"][-1]["units"] = 1
    (tmp / "spec.json").write_text(json.dumps(spec))
    _train(tmp / "spec.json")
    for args in (
        ["predict", tmp / "ae.h5", tmp / "test.csv", "--score"],
        ["evaluate", tmp / "ae.h5", "--anomaly-quantile", "0.9"],
        ["evaluate", tmp / "ae.h5", "--errors", tmp / "e.csv"],
    ):
        r = _cli(*args)
        assert r.exit_code == 2 and "data.target = 'input'" in r.stderr, r.output


# -- the shipped spec ----------------------------------------------------------------------------------
def test_shipped_transactions_spec_finds_the_planted_anomalies(tmp_path):
    from tests.helpers import train_spec

    s, _ = train_spec("transactions_anomaly.toml", tmp_path)
    r = _cli("evaluate", s.output.checkpoint, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["anomalies_true"] == 90 and out["samples"] == 3000
    assert out["anomaly_recall"] >= 0.9 and out["anomaly_precision"] >= 0.6  # README: 1.00 and 0.73


def test_emulated_gpu_gives_the_cpu_threshold_errors_and_flags(data, emulated_gpu):
    """Threshold fitting, evaluate and predict read device outputs back to the host (the CuPy emulator)."""
    from nnctl import backend, run
    from nnctl import spec as spec_mod

    tmp, _ = data
    got = {}
    for device in ("cpu", "gpu"):
        s = spec_mod.load(_spec(tmp))
        s = outputs_at(s, str(tmp / f"{device}.h5"))
        run.train(s, device=device)
        ev = run.evaluate(tmp / f"{device}.h5", device=device)
        restored = run.restore(tmp / f"{device}.h5", device)
        x, _ = _x(tmp / "other.csv")
        outputs, _ = run.predict(restored, x)
        got[device] = (Checkpoint(tmp / f"{device}.h5").anomaly["threshold"], ev, anomaly.scores(restored, x, outputs))
    assert backend.device == "gpu"
    (t_cpu, ev_cpu, (e_cpu, f_cpu)), (t_gpu, ev_gpu, (e_gpu, f_gpu)) = got["cpu"], got["gpu"]
    assert t_gpu == pytest.approx(t_cpu, rel=1e-5)
    assert ev_gpu["anomaly_tp"] == ev_cpu["anomaly_tp"] and ev_gpu["error_mean"] == pytest.approx(ev_cpu["error_mean"])
    np.testing.assert_allclose(e_gpu, e_cpu, rtol=1e-5)
    assert isinstance(e_gpu, np.ndarray) and np.array_equal(f_gpu, f_cpu)
