"""NaN/inf in the inputs of ``nnctl predict`` and ``nnctl evaluate --data``: exit 2 and one ``error:`` line
naming the file and the row and column, never a NaN prediction with exit 0. The real command, in a subprocess."""

import struct
import subprocess
import sys

import h5py
import numpy as np
import pytest

FEATURES = ["a", "b", "c", "d"]


def nnctl(*args, input=None, cwd=None):
    p = subprocess.run(
        [sys.executable, "-m", "nnctl", *map(str, args)],
        input=input,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )
    return p.returncode, p.stdout, p.stderr


def one_error(code, out, err):
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and "nan" not in out.lower(), (out, err)
    return lines[0]


def _spec(tmp, train, name):
    path = tmp / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\n[data]\ntrain = "{train}"\n[[model.layers]]\ntype = "Dense"\nunits = 5\n'
        'activation = "relu"\n[[model.layers]]\ntype = "Dense"\nunits = 3\nactivation = "softmax"\n'
        '[train]\nloss = "sparse_categorical_crossentropy"\nepochs = 1\n'
        f'[output]\ncheckpoint = "{tmp / name}.h5"\n'
    )
    return path


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """(CSV-trained checkpoint, npz-trained checkpoint, folder), both 4 features -> 3 classes."""
    tmp = tmp_path_factory.mktemp("finite")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 4)), rng.integers(0, 3, 60)
    (tmp / "d.csv").write_text(
        ",".join(FEATURES) + ",label\n" + "".join(",".join(f"{v:.3f}" for v in r) + f",{c}\n" for r, c in zip(x, y))
    )
    np.savez(tmp / "d.npz", x=x, y=y)
    for name, data in (("csv", "d.csv"), ("arr", "d.npz")):
        code, _, err = nnctl("train", _spec(tmp, tmp / data, name), "--quiet")
        assert code == 0, err
    return tmp / "csv.h5", tmp / "arr.h5", tmp


def _bad(value, row=1, col=2, n=3):
    x = np.ones((n, 4))
    x[row, col] = value
    return x


def _idx_float32(x):
    return bytes([0, 0, 0x0D, 2]) + struct.pack(">II", *x.shape) + x.astype(">f4").tobytes()


# (checkpoint: "csv" or "arr", file name, writer, words the one line must hold)
PREDICT = [
    ("arr", "p.npy", lambda p: np.save(p, _bad(np.nan)), ["p.npy", "row 1, column 2", "nan"]),
    ("arr", "p.npz", lambda p: np.savez(p, x=_bad(np.inf, 2, 0)), ["p.npz", "'x'", "row 2, column 0", "inf"]),
    (
        "arr",
        "p.h5",
        lambda p: h5py.File(p, "w").create_dataset("x", data=_bad(-np.inf, 0, 3)).file.close(),
        ["p.h5", "'x'", "row 0, column 3", "-inf"],
    ),
    ("arr", "p.idx", lambda p: p.write_bytes(_idx_float32(_bad(np.nan, 2, 1))), ["p.idx", "row 2, column 1", "nan"]),
    ("csv", "p.csv", lambda p: p.write_text("a,b,c,d\n1,2,3,4\n1,2,3,-inf\n"), ["p.csv", "line 3", "'d'", "-inf"]),
    # finite, but out of float32's range once read: would be a NaN probability
    (
        "csv",
        "big.csv",
        lambda p: p.write_text("a,b,c,d\n1,2,3,4\n1e300,2,3,4\n"),
        ["big.csv", "row 1, column 0", "out of range", "float32"],
    ),
]


@pytest.mark.parametrize("kind, name, write, words", PREDICT, ids=[c[1] for c in PREDICT])
def test_predict_refuses_non_finite_inputs(ckpts, kind, name, write, words):
    csv_ckpt, arr_ckpt, tmp = ckpts
    write(tmp / name)
    for extra in ([], ["--proba"], ["--preprocessed"]) if name != "big.csv" else ([], ["--proba"]):
        line = one_error(*nnctl("predict", csv_ckpt if kind == "csv" else arr_ckpt, tmp / name, *extra))
        for w in words:
            assert w in line, (w, line)


@pytest.mark.parametrize(
    "text, words",
    [
        ('{"a": 1, "b": 2, "c": NaN, "d": 4}\n', ["stdin", "line 1", "feature 'c'", "nan"]),
        ("[1, 2, 3, 4]\n\n[1, Infinity, 3, 4]\n", ["stdin", "line 3", "feature 'b'", "inf"]),
    ],
)
def test_predict_refuses_non_finite_json_lines(ckpts, text, words):
    line = one_error(*nnctl("predict", ckpts[0], "-", input=text))
    for w in words:
        assert w in line, (w, line)


EVALUATE = [
    ("arr", "e.npz", lambda p: np.savez(p, x=_bad(np.nan), y=np.array([0, 1, 2])), ["e.npz", "'x'", "row 1, column 2"]),
    ("arr", "e.h5", lambda p: _h5(p, _bad(np.inf, 0, 0)), ["e.h5", "'x'", "row 0, column 0", "inf"]),
    ("csv", "e.csv", lambda p: p.write_text("a,b,c,d,label\n1,2,3,4,0\n1,2,nan,4,1\n"), ["e.csv", "line 3", "'c'"]),
    (
        "csv",
        "ebig.csv",
        lambda p: p.write_text("a,b,c,d,label\n1,2,3,4,0\n1,2,3,-1e300,1\n"),
        ["ebig.csv", "row 1, column 3", "out of range"],
    ),
]


def _h5(p, x):
    with h5py.File(p, "w") as f:
        f["x"] = x
        f["y"] = np.array([0, 1, 2])


@pytest.mark.parametrize("kind, name, write, words", EVALUATE, ids=[c[1] for c in EVALUATE])
def test_evaluate_data_refuses_non_finite_inputs(ckpts, kind, name, write, words):
    csv_ckpt, arr_ckpt, tmp = ckpts
    write(tmp / name)
    for extra in ([], ["--json"]):
        line = one_error(*nnctl("evaluate", csv_ckpt if kind == "csv" else arr_ckpt, "--data", tmp / name, *extra))
        for w in words:
            assert w in line, (w, line)


def test_finite_inputs_still_predict(ckpts):
    csv_ckpt, arr_ckpt, tmp = ckpts
    np.save(tmp / "ok.npy", np.ones((3, 4)))
    code, out, err = nnctl("predict", arr_ckpt, tmp / "ok.npy", "--proba")
    assert code == 0, err
    rows = [r.split(",") for r in out.strip().splitlines()[1:]]
    assert len(rows) == 3 and all(np.isfinite(float(v)) for r in rows for v in r[1:])


def test_an_overflowing_output_is_refused():
    from nnctl.errors import DataError
    from nnctl.inference import finite_outputs

    finite_outputs(np.array([[0.2, 0.8]]), "in.csv")
    with pytest.raises(DataError, match=r"in.csv: row 3, column 1 holds nan; .*overflowed"):
        finite_outputs(np.array([[0.2, 0.8]] * 3 + [[0.5, np.nan]]), "in.csv")
