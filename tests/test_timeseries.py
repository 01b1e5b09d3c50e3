"""Time-series windows: no look-ahead, shapes, ordered validation, test look-back, naive baseline, predict."""

import dataclasses

import numpy as np
import pytest

from nnctl.data import load_dataset
from nnctl.data.inputs import read_inputs
from nnctl.data.timeseries import make_windows, naive_metrics, read_series_inputs
from nnctl.errors import DataError
from nnctl.spec import validate


def write_series(path, rows, header=("a", "value")):
    path.write_text(",".join(header) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


def index_series(path, start, n):
    """Row r (global time start + r): a = -t, value = t, so every value names its time step."""
    return write_series(path, [(-t, t) for t in range(start, start + n)])


def spec_for(tmp_path, **data):
    d = {"kind": "timeseries", "train": "train.csv", **data}
    return validate(
        {"data": d, "model": {"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 1}]}}, base_dir=tmp_path
    )


@pytest.mark.parametrize("window,horizon,stride", [(1, 1, 1), (5, 1, 1), (4, 3, 1), (6, 2, 3), (7, 1, 10)])
def test_windows_never_see_their_target_or_later(tmp_path, window, horizon, stride):
    index_series(tmp_path / "train.csv", 0, 60)
    ds = load_dataset(spec_for(tmp_path, window=window, horizon=horizon, stride=stride), with_test=False)
    x, y = ds.x_train, ds.y_train[:, 0]
    n = (60 - window - horizon) // stride + 1
    assert x.shape == (n, window, 2) and ds.y_train.shape == (n, 1)
    for k in range(n):
        t = k * stride
        np.testing.assert_array_equal(x[k, :, 1], np.arange(t, t + window))  # the window's own rows, in order
        assert y[k] == t + window - 1 + horizon
        assert x[k, :, 1].max() == y[k] - horizon < y[k]
        np.testing.assert_array_equal(x[k, :, 0], -x[k, :, 1])


def test_make_windows_rejects_a_series_too_short():
    with pytest.raises(DataError, match="5 rows make no window: window 4 \\+ horizon 2 needs at least 6"):
        make_windows(np.zeros((5, 1)), np.zeros((5, 1)), 4, 2, 1, "s.csv")


def test_validation_is_the_end_of_the_series_in_order(tmp_path):
    index_series(tmp_path / "train.csv", 0, 105)
    ds = load_dataset(spec_for(tmp_path, window=5, validation={"split": 0.2}), with_test=False)
    assert len(ds.x_train) == 80 and len(ds.x_val) == 20
    np.testing.assert_array_equal(ds.y_train[:, 0], np.arange(5, 85))
    np.testing.assert_array_equal(ds.y_val[:, 0], np.arange(85, 105))
    # no training window, inputs or target, contains a validation target
    assert ds.x_train[:, :, 1].max() < ds.y_val.min() and ds.y_train.max() < ds.y_val.min()


def test_test_windows_look_back_into_the_training_tail(tmp_path):
    index_series(tmp_path / "train.csv", 0, 50)
    index_series(tmp_path / "test.csv", 50, 20)
    ds = load_dataset(spec_for(tmp_path, window=6, horizon=2, test="test.csv"))
    # every test row is a target once; the first window is train rows 43..48 (ends horizon-1 rows before)
    np.testing.assert_array_equal(ds.y_test[:, 0], np.arange(50, 70))
    np.testing.assert_array_equal(ds.x_test[0, :, 1], np.arange(43, 49))
    np.testing.assert_array_equal(ds.x_test[:, -1, 1], ds.y_test[:, 0] - 2)


def test_a_validation_file_sits_between_train_and_test(tmp_path):
    index_series(tmp_path / "train.csv", 0, 40)
    index_series(tmp_path / "val.csv", 40, 3)  # shorter than the look-back: test reaches into train too
    index_series(tmp_path / "test.csv", 43, 10)
    ds = load_dataset(spec_for(tmp_path, window=5, validation="val.csv", test="test.csv"))
    np.testing.assert_array_equal(ds.y_val[:, 0], [40, 41, 42])
    np.testing.assert_array_equal(ds.x_test[0, :, 1], np.arange(38, 43))
    np.testing.assert_array_equal(ds.y_test[:, 0], np.arange(43, 53))


def test_meta_and_columns_by_name(tmp_path):
    write_series(tmp_path / "train.csv", [(t, 2 * t, 3 * t) for t in range(30)], header=("p", "q", "r"))
    write_series(tmp_path / "test.csv", [(3 * t, t, 2 * t) for t in range(30, 40)], header=("r", "p", "q"))
    ds = load_dataset(spec_for(tmp_path, window=3, features=["q", "r"], target=["p", "r"], test="test.csv"))
    assert ds.prep.meta == {
        "window": 3,
        "horizon": 1,
        "stride": 1,
        "features": ["q", "r"],
        "targets": ["p", "r"],
        "target_in_features": [None, 1],
    }
    assert ds.x_test.shape == (10, 3, 2)
    np.testing.assert_array_equal(ds.y_test, [[t, 3 * t] for t in range(30, 40)])
    np.testing.assert_array_equal(ds.x_test[-1], [[2 * t, 3 * t] for t in range(36, 39)])


def test_npy_series(tmp_path):
    np.save(tmp_path / "train.npy", np.stack([np.arange(20.0), -np.arange(20.0)], axis=1))
    ds = load_dataset(spec_for(tmp_path, train="train.npy", window=4, target=0), with_test=False)
    assert ds.prep.meta["targets"] == ["0"] and ds.x_train.shape == (16, 4, 2)
    np.testing.assert_array_equal(ds.y_train[:, 0], np.arange(4, 20))


def test_missing_window_and_bad_cells_are_reported(tmp_path):
    index_series(tmp_path / "train.csv", 0, 20)
    with pytest.raises(DataError, match="data.window is required"):
        load_dataset(spec_for(tmp_path))
    write_series(tmp_path / "train.csv", [(1, 2), (3, "x"), (5, 6)])
    with pytest.raises(DataError, match="line 3, column 'value': expected a number, found 'x'"):
        load_dataset(spec_for(tmp_path, window=1))


@pytest.mark.parametrize("normalize,normalize_target", [("none", "none"), ("standard", "standard"), ("minmax", "none")])
def test_naive_metrics_match_a_hand_computation_in_original_units(tmp_path, normalize, normalize_target):
    rng = np.random.default_rng(0)
    vals = np.cumsum(rng.normal(size=(80, 2)), axis=0) * [1.0, 10.0] + [0.0, 50.0]
    write_series(tmp_path / "train.csv", vals[:60].round(4).tolist())
    write_series(tmp_path / "test.csv", vals[60:].round(4).tolist())
    spec = spec_for(
        tmp_path, window=4, horizon=2, test="test.csv", normalize=normalize, normalize_target=normalize_target
    )
    spec = dataclasses.replace(spec, dtype="float64")
    ds = load_dataset(spec)
    v = vals.round(4)[:, 1]
    targets = np.arange(60, 80)
    err = v[targets - 2] - v[targets]  # last observed value = `horizon` steps before the target
    got = naive_metrics(ds.x_test, ds.y_test, ds.prep)
    assert got["naive_mse"] == pytest.approx(np.mean(err**2), rel=1e-9)
    assert got["naive_mae"] == pytest.approx(np.mean(np.abs(err)), rel=1e-9)


def test_naive_metrics_need_the_target_among_the_features(tmp_path):
    index_series(tmp_path / "train.csv", 0, 30)
    ds = load_dataset(spec_for(tmp_path, window=3, features=["a"]), with_test=False)
    got = naive_metrics(ds.x_train, ds.y_train, ds.prep)
    assert set(got) == {"naive_note"} and "value" in got["naive_note"]


def test_predict_windows_end_at_the_last_row(tmp_path):
    index_series(tmp_path / "train.csv", 0, 30)
    ds = load_dataset(spec_for(tmp_path, window=4, stride=3), with_test=False)
    data = b"value,a\n" + b"".join(f"{t},{-t}\n".encode() for t in range(100, 111))  # columns in another order
    x = read_series_inputs(data, "new.csv", ds.prep)
    assert x.shape == (3, 4, 2)
    np.testing.assert_array_equal(x[:, -1, 1], [104, 107, 110])
    np.testing.assert_array_equal(x[-1, :, 0], -np.arange(107, 111))
    path = tmp_path / "new.csv"
    path.write_bytes(data)
    np.testing.assert_array_equal(read_inputs(str(path), ds.prep), x)  # wired into predict's reader
    with pytest.raises(DataError, match="3 rows, but a window needs 4"):
        read_series_inputs(b"a,value\n1,2\n3,4\n5,6\n", "short.csv", ds.prep)
    with pytest.raises(DataError, match="missing feature column 'value'"):
        read_series_inputs(b"a\n1\n", "cols.csv", ds.prep)
