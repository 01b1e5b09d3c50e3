"""The shipped sequence specs learn what they claim, in short runs: RNN seed example, LSTM forecast,
GRU and Transformer text classifiers, and the LSTM encoder-decoder with greedy decoding at predict time."""

import os
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from helpers import ROOT, train_spec
from nnctl import run
from nnctl.decode import greedy_decode
from nnctl.errors import DataError

REVERSE_TEST = ROOT / "examples/data/reverse-test.npz"


def _epochs(events):
    return [e for e in events if e["event"] == "epoch"]


def test_rnn_seed_fits_the_notes_example(tmp_path):
    events = []
    s, done = train_spec("rnn_seed.toml", tmp_path, emit=events.append)
    losses = [e["loss"] for e in _epochs(events)]
    assert losses[-1] < losses[0] / 100
    y = np.load(ROOT / "examples/data/rnn_seed.npz")["y"]
    mse = run.evaluate(s.output.checkpoint)["loss"]
    assert mse < 1e-3 and mse < np.var(y) / 100  # targets span 0.4..1.6 (variance 0.18)


def test_sine_lstm_beats_the_last_value_forecast(tmp_path):
    s, _ = train_spec("sine_lstm.toml", tmp_path, "train.epochs=3")
    ev = run.evaluate(s.output.checkpoint)
    assert ev["samples"] == 500  # every test row is a target exactly once
    assert ev["mse"] < 0.7 * ev["naive_mse"] and ev["mae"] < ev["naive_mae"]


@pytest.fixture(scope="module")
def text_gru(tmp_path_factory):
    s, _ = train_spec("text_gru.toml", tmp_path_factory.mktemp("text_gru"), "train.epochs=3")
    return s.output.checkpoint


def test_text_gru_reads_negations(text_gru):
    assert run.evaluate(text_gru)["accuracy"] >= 0.75  # balanced classes: chance is 0.5


def test_text_transformer_accuracy(tmp_path):
    s, _ = train_spec("text_transformer.toml", tmp_path, "train.epochs=5")
    assert run.evaluate(s.output.checkpoint)["accuracy"] >= 0.75


def test_predict_cli_takes_raw_text_lines(text_gru):
    lines = [
        "this movie was not good at all",
        "the acting was really wonderful",
        "the food was bad but the staff was great",
        "Honestly, the plot was not satisfying.",
    ]
    p = subprocess.run(
        [sys.executable, "-m", "nnctl", "predict", str(text_gru), "-"],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
    )
    assert p.returncode == 0, p.stderr
    rows = p.stdout.splitlines()
    assert rows[0] == "prediction" and len(rows) == 1 + len(lines)
    assert set(rows[1:]) <= {"positive", "negative"}
    assert rows[2:] == ["positive", "positive", "negative"]  # the template's own phrasing, negation and "but"


@pytest.fixture(scope="module")
def seq2seq(tmp_path_factory):
    s, _ = train_spec("seq2seq_reverse.toml", tmp_path_factory.mktemp("seq2seq"), "train.epochs=3")
    return s.output.checkpoint


def test_seq2seq_greedy_decode_reverses_held_out_sources(seq2seq):
    data = np.load(REVERSE_TEST)
    src, want = data["x"][:, :5], data["y"]
    probs, ids = run.predict(run.restore(seq2seq, "auto"), src)
    assert probs.shape == (len(src), 5, 10) and ids.shape == (len(src), 5)
    assert np.mean(np.all(ids == want, axis=1)) >= 0.9  # whole sequences right, fed back step by step


def test_greedy_decode_is_exact_for_a_causal_decoder(seq2seq):
    """Step t's output does not depend on decoder inputs after t, so one pass per step is exact."""
    _, model, _, spec = run.restore(seq2seq, "auto")
    src = np.load(REVERSE_TEST)["x"][:50, :5]
    p = greedy_decode(model, src, spec.model.decode)
    ids = p.argmax(-1)
    rng = np.random.default_rng(0)
    for t in range(5):
        x = np.concatenate([src, np.full((len(src), 1), 10), ids[:, :4]], axis=1)
        x[:, 5 + t + 1 :] = rng.integers(0, 11, (len(src), 4 - t))  # garbage after step t
        np.testing.assert_allclose(model.predict(x)[:, t], p[:, t], rtol=1e-5, atol=1e-6)


def test_seq2seq_predict_cli_and_bad_inputs(seq2seq):
    from nnctl.cli.main import app

    r = CliRunner().invoke(app, ["predict", str(seq2seq), "-"], input="a,b,c,d,e\n1,2,3,4,5\n")
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines() == ["prediction_0,prediction_1,prediction_2,prediction_3,prediction_4", "5,4,3,2,1"]
    restored = run.restore(seq2seq, "auto")
    with pytest.raises(DataError, match="expected 5 columns"):
        run.predict(restored, np.zeros((2, 10)))
    with pytest.raises(DataError, match="whole numbers"):
        run.predict(restored, np.full((1, 5), 2.5))
    with pytest.raises(DataError, match="input: sample 2: token id 99 is outside the table of Embedding"):
        run.predict(restored, np.array([[1, 2, 3, 4, 5], [1, 2, 99, 4, 5]]))
