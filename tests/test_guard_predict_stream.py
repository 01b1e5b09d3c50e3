"""``nnctl predict`` on CSV or JSON lines reads, answers and writes in chunks: the same rows as one whole
pass, errors numbered from the start of the input, the first answers out before the input ends, and memory
that does not grow with the input. The real command, in a subprocess."""

import json
import os
import select
import subprocess
import sys

import numpy as np
import pytest
from child_rss import run_measured

FEATURES = ["a", "b", "c", "d"]


def nnctl(*args, input=None):
    p = subprocess.run(
        [sys.executable, "-m", "nnctl", *map(str, args)], input=input, capture_output=True, text=True, timeout=300
    )
    return p.returncode, p.stdout, p.stderr


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stream")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 4)), np.array(["lo", "mid", "hi"])[rng.integers(0, 3, 60)]
    (tmp / "d.csv").write_text(
        "a,b,c,d,label\n" + "".join(",".join(f"{v:.3f}" for v in r) + f",{c}\n" for r, c in zip(x, y))
    )
    (tmp / "s.toml").write_text(
        f'name = "s"\n[data]\ntrain = "{tmp / "d.csv"}"\nnormalize = "standard"\n'
        '[[model.layers]]\ntype = "Dense"\nunits = 5\nactivation = "relu"\n'
        '[[model.layers]]\ntype = "Dense"\nunits = 3\nactivation = "softmax"\n'
        '[train]\nloss = "categorical_crossentropy"\nepochs = 2\n'
        f'[output]\ncheckpoint = "{tmp / "s.h5"}"\n'
    )
    code, _, err = nnctl("train", tmp / "s.toml", "--quiet")
    assert code == 0, err
    return tmp / "s.h5"


def _rows(n, seed=1):
    return np.round(np.random.default_rng(seed).normal(size=(n, 4)), 4)


def _csv(x, order=FEATURES):
    cols = [FEATURES.index(f) for f in order]
    return ",".join(order) + "\n" + "".join(",".join(repr(float(r[c])) for c in cols) + "\n" for r in x)


def test_chunks_give_the_rows_of_one_whole_pass(ckpt, tmp_path):
    from nnctl import run

    x = _rows(9000)  # three chunks of 4096 rows: 4096, 4096, 808
    restored = run.restore(ckpt, "cpu")
    probs, labels = run.predict(restored, x)  # the whole array at once, in this process
    code, out, err = nnctl("predict", ckpt, "-", "--proba", input=_csv(x, ["d", "b", "a", "c"]))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "prediction,proba_hi,proba_lo,proba_mid" and len(lines) == 9001  # one header
    got = [line.split(",") for line in lines[1:]]
    assert [g[0] for g in got] == [str(v) for v in labels]
    np.testing.assert_allclose(np.array([[float(v) for v in g[1:]] for g in got]), probs, rtol=1e-5, atol=1e-6)
    # JSON lines, and a file output (written whole, atomically)
    text = "".join(json.dumps(dict(zip(FEATURES, map(float, r)))) + "\n" for r in x)
    (tmp_path / "in.jsonl").write_text(text)
    code, _, err = nnctl("predict", ckpt, tmp_path / "in.jsonl", "-f", "jsonl", "-o", tmp_path / "out.jsonl")
    assert code == 0, err
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["prediction"] for r in rows] == [str(v) for v in labels]
    assert sorted(os.listdir(tmp_path)) == ["in.jsonl", "out.jsonl"]


def test_errors_are_numbered_from_the_start_of_the_input(ckpt, tmp_path):
    x = _rows(6000)
    text = _csv(x).splitlines()
    text[5001] = text[5001].replace(text[5001].split(",")[2], "oops", 1)  # line 5002 of the file, column c
    code, out, err = nnctl("predict", ckpt, "-", input="\n".join(text) + "\n")
    assert code == 2 and err.strip().splitlines() == [err.strip()] and "Traceback" not in err
    assert "stdin: line 5002, column 'c': expected a number, found 'oops'" in err
    assert len(out.splitlines()) == 4097  # the first chunk was answered before the bad line was read
    x[4500, 0] = 1e300  # finite, but inf once scaled to float32: row 4500 of the input, in its second chunk
    code, _, err = nnctl("predict", ckpt, "-", input=_csv(x))
    assert code == 2 and "stdin: row 4500, column 0 holds inf" in err and "out of range" in err, err
    code, _, err = nnctl(
        "predict", ckpt, "-", input='{"a": 1, "b": 2, "c": 3, "d": 4}\n' * 5000 + '{"a": 1, "b": 2, "c": 3}\n'
    )
    assert code == 2 and "stdin: line 5001: missing feature 'd'" in err, err
    code, _, err = nnctl("predict", ckpt, "-", input="a,b,c,d\n")
    assert code == 2 and "no data rows after the header" in err


def test_the_first_answers_come_before_the_input_ends(ckpt):
    p = subprocess.Popen(
        [sys.executable, "-m", "nnctl", "predict", str(ckpt), "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        p.stdin.write(_csv(_rows(5000)).encode())  # one full chunk and part of the next; stdin stays open
        p.stdin.flush()
        # a bound on waiting, not a timing assertion: a reader of the whole input would never answer here
        ready, _, _ = select.select([p.stdout], [], [], 120)
        assert ready, "no output while stdin is open"
        assert p.stdout.readline() == b"prediction\n"
        p.stdin.close()
        rest = p.stdout.read().decode().splitlines()
        assert len(rest) == 5000 and p.wait(60) == 0
    finally:
        p.kill()
        p.wait()


@pytest.mark.slow
def test_memory_does_not_grow_with_the_input(ckpt):
    def peak(n):
        (ckpt.parent / "in.csv").write_text(_csv(_rows(n)))
        code, out, err, mb = run_measured("predict", ckpt, "-", stdin=ckpt.parent / "in.csv")
        assert code == 0 and len(out.splitlines()) == n + 1, err
        return mb

    small, large = peak(20_000), peak(400_000)
    # the whole-input reader grew by about 0.65 KB per row: 250 MB more for 380,000 more rows
    assert large - small < 40, (small, large)
