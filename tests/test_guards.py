"""Guards before training: non-finite data, overwriting another model's checkpoint, free space; and the
memory estimate of ``nnctl check``. Each runs the real command in a subprocess."""

import subprocess
import sys

import h5py
import numpy as np
import pytest

from helpers import checkpoint_arrays


def nnctl(*args, cwd=None):
    p = subprocess.run(
        [sys.executable, "-m", "nnctl", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120
    )
    return p.returncode, p.stdout, p.stderr


def spec(tmp, train, extra="", name="s", units=3, out="out.h5"):
    """A tiny classifier spec on ``train`` (one epoch), written next to it."""
    path = tmp / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\n[data]\ntrain = "{train}"\n{extra}\n[[model.layers]]\ntype = "Dense"\n'
        f'units = {units}\nactivation = "relu"\n[[model.layers]]\ntype = "Dense"\nunits = 3\n'
        'activation = "softmax"\n[train]\nloss = "sparse_categorical_crossentropy"\nepochs = 1\n'
        f'[output]\ncheckpoint = "{tmp / out}"\n'
    )
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


@pytest.mark.parametrize(
    "build",
    [
        _npz_nan_x,
        _npz_inf_y,
        _npy_mmap_inf,
        _h5_streamed_nan,
        _h5_validation_nan,
        _csv_cell("nan"),
        _csv_cell("inf"),
        _csv_cell("-Infinity"),
    ],
    ids=[
        "npz-nan-x",
        "npz-inf-y",
        "npy-mmap-inf",
        "h5-streamed-nan",
        "validation-nan",
        "csv-nan",
        "csv-inf",
        "csv-neg-infinity",
    ],
)
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


# -- 2. another model's checkpoint is not overwritten without --force -------------------------------------
def _npz(tmp, features=4, name="d.npz"):
    rng = np.random.default_rng(1)
    np.savez(tmp / name, x=rng.normal(size=(40, features)), y=rng.integers(0, 3, 40))
    return tmp / name


def _weights(path):
    return checkpoint_arrays(path, ("weights",))


def _refused(tmp, before, *args):
    code, _, err = nnctl("train", *args, "--quiet")
    line = _one_error(code, err)
    assert str(tmp / "out.h5") in line and "--force" in line, line
    assert (tmp / "out.h5").read_bytes() == before  # untouched
    return line


def test_another_spec_name_is_refused_then_forced(tmp_path):
    data = _npz(tmp_path)
    assert nnctl("train", spec(tmp_path, data, name="first"), "--quiet")[0] == 0
    before = (tmp_path / "out.h5").read_bytes()
    line = _refused(tmp_path, before, spec(tmp_path, data, name="second"))
    assert "'first'" in line and "'second'" in line
    code, _, err = nnctl("train", spec(tmp_path, data, name="second"), "--quiet", "--force")
    assert code == 0, err
    with h5py.File(tmp_path / "out.h5", "r") as f:
        assert '"second"' in f["spec"][()].decode()


def test_another_architecture_is_refused(tmp_path):
    data = _npz(tmp_path)
    assert nnctl("train", spec(tmp_path, data, units=5), "--quiet")[0] == 0
    before = (tmp_path / "out.h5").read_bytes()
    line = _refused(tmp_path, before, spec(tmp_path, data, units=6))
    assert "units 5 -> 6" in line


def test_same_layers_on_wider_data_is_refused_by_parameter_shapes(tmp_path):
    assert nnctl("train", spec(tmp_path, _npz(tmp_path, 4)), "--quiet")[0] == 0
    before = (tmp_path / "out.h5").read_bytes()
    line = _refused(tmp_path, before, spec(tmp_path, _npz(tmp_path, 6, "wide.npz")))
    assert "[4, 3]" in line and "[6, 3]" in line  # the first Dense kernel: (features, units)


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    (tmp_path / "out.h5").write_bytes(b"my notes, not a model\n")
    _refused(tmp_path, b"my notes, not a model\n", spec(tmp_path, _npz(tmp_path)))


def test_rerun_and_resume_in_place_are_allowed(tmp_path):
    path = spec(tmp_path, _npz(tmp_path))
    assert nnctl("train", path, "--quiet")[0] == 0
    first = _weights(tmp_path / "out.h5")
    code, _, err = nnctl("train", path, "--quiet", "--seed", "7")  # same spec again: replaces its own run
    assert code == 0, err
    assert any(not np.array_equal(first[k], v) for k, v in _weights(tmp_path / "out.h5").items())
    code, _, err = nnctl("train", "--resume", tmp_path / "out.h5", "--epochs", "2", "--quiet")
    assert code == 0, err
    with h5py.File(tmp_path / "out.h5", "r") as f:
        assert len(f["history/loss"]) == 2


# -- 3. free space for the checkpoint ----------------------------------------------------------------------
def _free_space_run(tmp, monkeypatch, free, optimizer):
    import shutil as sh

    from nnctl import guards, run
    from nnctl import spec as spec_mod

    seen = []

    def usage(folder):
        seen.append(str(folder))
        return sh._ntuple_diskusage(10 << 30, (10 << 30) - free, free)

    monkeypatch.setattr(guards.shutil, "disk_usage", usage)
    s = spec_mod.load(spec(tmp, _npz(tmp), units=5), [f"train.optimizer={optimizer}"])
    return seen, lambda: run.train(s)


# Dense(4 -> 5) + Dense(5 -> 3): 4*5 + 5 + 5*3 + 3 = 43 float32 parameters, no state; Adam keeps 2 slots (m, v),
# SGD without momentum none. Checkpoint estimate: 43 * (1 + slots) * 4 bytes + 64 KiB margin, needed twice.
@pytest.mark.parametrize("optimizer, slots", [("adam", 2), ("sgd", 0)])
def test_free_space_below_twice_the_checkpoint_is_refused(tmp_path, monkeypatch, optimizer, slots):
    from nnctl.errors import OutputError

    need = 2 * (43 * (1 + slots) * 4 + (64 << 10))
    seen, train = _free_space_run(tmp_path, monkeypatch, need - 1, optimizer)
    with pytest.raises(OutputError) as exc:
        train()
    msg = str(exc.value)
    assert msg.startswith(f"{tmp_path}: checkpoint folder has ") and f"{need / 2**20:.1f} MiB" in msg, msg
    assert seen == [str(tmp_path)] and not (tmp_path / "out.h5").exists()
    _, train = _free_space_run(tmp_path, monkeypatch, need, optimizer)
    assert train()["epochs_run"] == 1 and (tmp_path / "out.h5").exists()


# -- 4. nnctl check's training-memory estimate -------------------------------------------------------------
def _dense_spec(tmp, optimizer, dtype="float32"):
    path = tmp / "m.toml"
    path.write_text(
        f'dtype = "{dtype}"\n[data]\ntrain = "unused.csv"\n[model]\ninput_shape = [512]\n'
        '[[model.layers]]\ntype = "Dense"\nunits = 1024\nactivation = "relu"\n'
        '[[model.layers]]\ntype = "Dense"\nunits = 10\nactivation = "softmax"\n'
        f'[train]\nloss = "sparse_categorical_crossentropy"\nbatch_size = 64\noptimizer = {optimizer}\n'
    )
    return path


# Dense(512 -> 1024) + Dense(1024 -> 10): 512*1024 + 1024 + 1024*10 + 10 = 535,562 parameters; each sample's
# layer outputs 1024 + 10 values, kept for a batch of 64.
@pytest.mark.parametrize(
    "optimizer, slots, dtype, itemsize",
    [('"adam"', 2, "float32", 4), ('{type = "sgd", momentum = 0.9}', 1, "float64", 8), ('"sgd"', 0, "float32", 4)],
)
def test_check_reports_training_memory(tmp_path, optimizer, slots, dtype, itemsize):
    import json

    params = 512 * 1024 + 1024 + 1024 * 10 + 10
    want = {
        "parameters": params * itemsize,
        "gradients": params * itemsize,
        "optimizer_slots": slots * params * itemsize,
        "activations": 64 * (1024 + 10) * itemsize,
    }
    want["total"] = sum(want.values())
    code, out, err = nnctl("check", _dense_spec(tmp_path, optimizer, dtype), "--json")
    assert code == 0, err
    mem = json.loads(out)["memory"]
    assert mem["batch_size"] == 64 and mem["dtype"] == dtype and mem["optimizer_slots_per_parameter"] == slots
    for k, v in want.items():
        assert mem[f"{k}_bytes"] == v, k
        assert mem[f"{k}_mib"] == pytest.approx(v / 2**20), k
    code, out, err = nnctl("check", _dense_spec(tmp_path, optimizer, dtype))
    assert code == 0, err
    line = next(ln for ln in out.splitlines() if ln.startswith("Training memory"))
    assert f"parameters {want['parameters'] / 2**20:.3f}" in line
    assert f"optimizer slots {want['optimizer_slots'] / 2**20:.3f}" in line
    assert f"activations {want['activations'] / 2**20:.3f} per batch of 64" in line
    assert f"total {want['total'] / 2**20:.3f}" in line
