"""Guards before training: non-finite data, overwriting another model's checkpoint, free space; and the
memory estimate of ``nnctl check``. Each runs the real command in a subprocess."""

import subprocess
import sys

import h5py
import numpy as np
import pytest


def nnctl(*args, cwd=None):
    p = subprocess.run([sys.executable, "-m", "nnctl", *map(str, args)], capture_output=True, text=True, cwd=cwd,
                       timeout=120)
    return p.returncode, p.stdout, p.stderr


def spec(tmp, train, extra="", name="s", units=3, out="out.h5"):
    """A tiny classifier spec on ``train`` (one epoch), written next to it."""
    path = tmp / f"{name}.toml"
    path.write_text(f'name = "{name}"\n[data]\ntrain = "{train}"\n{extra}\n[[model.layers]]\ntype = "Dense"\n'
                    f'units = {units}\nactivation = "relu"\n[[model.layers]]\ntype = "Dense"\nunits = 3\n'
                    'activation = "softmax"\n[train]\nloss = "sparse_categorical_crossentropy"\nepochs = 1\n'
                    f'[output]\ncheckpoint = "{tmp / out}"\n')
    return path


def _data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)), rng.integers(0, 3, n)


def _one_error(code, err):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


# -- 1. NaN / inf in the data ----------------------------------------------------------------------------
def _npz_nan_x(tmp):
    x, y = _data()
    x[7, 2] = np.nan
    np.savez(tmp / "d.npz", x=x, y=y)
    return spec(tmp, tmp / "d.npz"), ["d.npz", "'x'", "row 7", "nan"]


def _npz_inf_y(tmp):
    x, y = _data()
    y = y.astype(float)
    y[11] = -np.inf
    np.savez(tmp / "d.npz", features=x, labels=y)
    return spec(tmp, tmp / "d.npz", 'x = "features"\ny = "labels"'), ["d.npz", "'labels'", "row 11", "-inf"]


def _npy_mmap_inf(tmp):
    x, y = _data(n=3000)  # several blocks of rows under a small chunk: the bad row is in a later block
    x = np.repeat(x[:, :, None], 400, axis=2).reshape(3000, -1)
    x[2900, 5] = np.inf
    np.save(tmp / "x.npy", x)
    np.save(tmp / "y.npy", y)
    return spec(tmp, tmp / "x.npy", 'y = "y.npy"\nstream = "mmap"'), ["x.npy", "row 2900", "inf"]


def _h5_streamed_nan(tmp):
    x, y = _data()
    x[0, 0] = np.nan
    with h5py.File(tmp / "d.h5", "w") as f:
        f.create_dataset("x", data=x, chunks=(8, 4))
        f["y"] = y
    return spec(tmp, tmp / "d.h5", 'stream = "batches"'), ["d.h5", "'x'", "row 0", "nan"]


def _h5_validation_nan(tmp):
    x, y = _data()
    np.savez(tmp / "d.npz", x=x, y=y)
    x[3, 1] = np.nan
    np.savez(tmp / "v.npz", x=x, y=y)
    return spec(tmp, tmp / "d.npz", f'validation = "{tmp / "v.npz"}"'), ["v.npz", "'x'", "row 3", "nan"]


def _csv_cell(token):
    def build(tmp):
        rows = "\n".join(f"{i * 0.1},{token if i == 3 else 1.5},{i % 3}" for i in range(30))
        (tmp / "d.csv").write_text("a,b,label\n" + rows + "\n")
        return spec(tmp, tmp / "d.csv"), ["d.csv", "line 5", "'b'", repr(token)]  # header is line 1
    return build


@pytest.mark.parametrize("build", [_npz_nan_x, _npz_inf_y, _npy_mmap_inf, _h5_streamed_nan, _h5_validation_nan,
                                   _csv_cell("nan"), _csv_cell("inf"), _csv_cell("-Infinity")],
                         ids=["npz-nan-x", "npz-inf-y", "npy-mmap-inf", "h5-streamed-nan", "validation-nan",
                              "csv-nan", "csv-inf", "csv-neg-infinity"])
def test_non_finite_data_is_refused_before_training(tmp_path, build):
    path, words = build(tmp_path)
    code, _, err = nnctl("train", path, "--quiet")
    line = _one_error(code, err)
    for w in words:
        assert w in line, (w, line)
    assert not (tmp_path / "out.h5").exists()


def test_finite_arrays_still_train(tmp_path):
    x, y = _data()
    np.savez(tmp_path / "d.npz", x=x, y=y)
    code, _, err = nnctl("train", spec(tmp_path, tmp_path / "d.npz"), "--quiet")
    assert code == 0, err
    assert (tmp_path / "out.h5").exists()


def test_check_finite_reads_streamed_arrays_in_blocks(monkeypatch):
    from nnctl.data import splits

    class Counting(np.ndarray):
        reads: list = []

        def __getitem__(self, key):
            got = super().__getitem__(key)
            if isinstance(key, slice):
                Counting.reads.append(len(got))
            return got

    monkeypatch.setattr(splits, "CHUNK_BYTES", 10 * 8 * 4)  # ten rows of 4 float64 per block
    a = np.zeros((95, 4)).view(Counting)
    a[94, 3] = np.inf
    with pytest.raises(splits.DataError, match="row 94"):
        splits.check_finite(a, "f.npy", "x")
    assert max(Counting.reads) == 10 and sum(Counting.reads) == 95
    splits.check_finite(np.array([1, 2, 3]), "f.npy", "x")  # integers: nothing to check
