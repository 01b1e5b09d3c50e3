"""Text data: tokenizer round trip, training-only vocabulary, char level, predict inputs, Embedding input_dim."""

import numpy as np
import pytest

from nnctl.data import load_dataset
from nnctl.data.preprocess import Preprocessor
from nnctl.data.text import Tokenizer, read_text_inputs
from nnctl.errors import DataError
from nnctl.spec import validate


def write_csv(path, rows, header=("text", "label")):
    import csv

    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def spec_for(tmp_path, layers=None, **data):
    d = {"kind": "text", "train": "train.csv", **data}
    layers = layers or [
        {"type": "Embedding", "output_dim": 4},
        {"type": "GlobalAveragePooling1D"},
        {"type": "Dense", "units": 2, "activation": "softmax"},
    ]
    return validate(
        {"data": d, "model": {"layers": layers}, "train": {"loss": "categorical_crossentropy"}}, base_dir=tmp_path
    )


def test_word_tokens_keep_inner_apostrophes_and_split_on_the_rest():
    tok = Tokenizer()
    assert tok.tokens("Don't STOP--it's 'great', isn't_it? x2 ok.") == [
        "don't",
        "stop",
        "it's",
        "great",
        "isn't",
        "it",
        "x2",
        "ok",
    ]
    assert Tokenizer(lowercase=False).tokens("Hi there") == ["Hi", "there"]


def test_vocabulary_order_round_trip_and_oov():
    tok = Tokenizer(vocab_size=5, max_length=8).fit(["c b a", "b a", "a c d", "e"])
    # counts a3 c2 b2 d1 e1 (c seen first): frequency first, ties alphabetical; 5 ids = pad, oov, a, b, c
    assert tok.vocab == ["<pad>", "<unk>", "a", "b", "c"]
    ids = tok.encode(["C, b! A d"])
    np.testing.assert_array_equal(ids, [[4, 3, 2, 1, 0, 0, 0, 0]])
    assert ids.dtype == np.int64
    assert tok.decode(ids[0]) == "c b a <unk>"
    back = Tokenizer.from_arrays(tok.settings, tok.to_arrays())
    assert back.vocab == tok.vocab and back.decode(back.encode(["a c b"])[0]) == "a c b"


@pytest.mark.parametrize(
    "padding,truncating,expected",
    [
        ("post", "post", [[2, 3, 4], [2, 0, 0]]),
        ("pre", "post", [[2, 3, 4], [0, 0, 2]]),
        ("post", "pre", [[4, 5, 6], [2, 0, 0]]),
        ("pre", "pre", [[4, 5, 6], [0, 0, 2]]),
    ],
)
def test_padding_and_truncating(padding, truncating, expected):
    tok = Tokenizer(max_length=3, padding=padding, truncating=truncating).fit(["a b c d e"])
    np.testing.assert_array_equal(tok.encode(["a b c d e", "a"]), expected)


def test_char_level():
    tok = Tokenizer(level="char", max_length=6).fit(["abba", "cab"])
    assert tok.vocab == ["<pad>", "<unk>", "a", "b", "c"]
    ids = tok.encode(["Ab z"])
    np.testing.assert_array_equal(ids, [[2, 3, 1, 1, 0, 0]])  # " " and "z" were never seen
    assert tok.decode(ids[0]) == "ab<unk><unk>"


def test_bad_settings_are_reported():
    with pytest.raises(DataError, match="vocab_size: expected an integer >= 2"):
        Tokenizer(vocab_size=1)
    with pytest.raises(DataError, match="padding: expected one of pre, post"):
        Tokenizer(padding="middle")


def test_vocabulary_comes_from_the_training_file_only(tmp_path):
    write_csv(tmp_path / "train.csv", [("good film", "pos"), ("bad film", "neg"), ("good good", "pos")])
    write_csv(tmp_path / "test.csv", [("splendid film", "pos")])
    ds = load_dataset(spec_for(tmp_path, test="test.csv", tokenizer={"max_length": 3}))
    assert ds.prep.arrays["vocab"].tolist() == ["<pad>", "<unk>", "good", "film", "bad"]
    np.testing.assert_array_equal(ds.x_test, [[1, 3, 0]])  # "splendid" is out of vocabulary
    assert ds.x_train.dtype == np.int64 and ds.x_train.shape == (3, 3)
    assert ds.prep.meta["tokenizer"]["max_length"] == 3 and ds.prep.meta["text_column"] == "text"
    assert ds.defaults == {"input_dim": 5}
    np.testing.assert_array_equal(ds.y_train, np.eye(2)[[1, 0, 1]])  # classes sorted: neg, pos


def test_validation_split_words_stay_out_of_the_vocabulary(tmp_path):
    rows = [(f"common word{i}", "a" if i % 2 else "b") for i in range(20)]
    write_csv(tmp_path / "train.csv", rows)
    spec = spec_for(tmp_path, validation={"split": 0.2, "stratify": True})
    ds = load_dataset(spec)
    assert len(ds.x_train) == 16 and len(ds.x_val) == 4
    # each text's second word is its own: seen in training for training rows, OOV for validation rows
    np.testing.assert_array_equal(ds.x_val[:, :2], [[2, 1]] * 4)
    assert (ds.x_train[:, 1] > 2).all()
    assert ds.defaults == {"input_dim": 2 + 1 + 16}
    again = load_dataset(spec)
    np.testing.assert_array_equal(again.x_val, ds.x_val)  # seeded: the same split every time


def test_embedding_input_dim_flows_into_the_model(tmp_path):
    from nnctl.assemble import for_checkpoint
    from nnctl.run import model_for_data

    write_csv(tmp_path / "train.csv", [("one two three", "x"), ("two three", "y"), ("three", "x")])
    spec = spec_for(tmp_path, tokenizer={"max_length": 4})
    ds = load_dataset(spec)
    model = model_for_data(spec, ds)
    emb = model.nodes[0].layer
    assert emb.input_dim == 5 == ds.defaults["input_dim"]
    assert for_checkpoint(spec, ds)[1].defaults == {"input_dim": 5}  # what the checkpoint stores beside the spec


def test_text_errors_name_the_file_and_column(tmp_path):
    write_csv(tmp_path / "train.csv", [("hi", "a")], header=("review", "label"))
    with pytest.raises(DataError, match="no text column 'text' \\(data.text\\); columns are review, label"):
        load_dataset(spec_for(tmp_path))
    ds = load_dataset(spec_for(tmp_path, text="review"))
    assert ds.prep.target_names == ["label"]
    with pytest.raises(DataError, match="data.normalize"):
        load_dataset(spec_for(tmp_path, text="review", normalize="standard"))


@pytest.fixture
def fitted(tmp_path):
    write_csv(tmp_path / "train.csv", [("red fish", "a"), ("blue fish, one", "b")])
    ds = load_dataset(spec_for(tmp_path, tokenizer={"max_length": 4}))
    return Preprocessor.from_arrays(ds.prep.to_arrays())  # as predict gets it from the checkpoint


def test_read_text_inputs_raw_lines(fitted):
    ids = read_text_inputs(b"Red fish, green fish\n\nblue\n", "stdin", fitted)
    tok = Tokenizer.from_arrays(fitted.meta["tokenizer"], fitted.arrays)
    assert [tok.decode(r) for r in ids] == ["red fish <unk> fish", "blue"]


def test_read_text_inputs_csv_with_header(fitted):
    ids = read_text_inputs(b'label,text\nb,"one fish, blue"\na,red\n', "in.csv", fitted)
    tok = Tokenizer.from_arrays(fitted.meta["tokenizer"], fitted.arrays)
    assert [tok.decode(r) for r in ids] == ["one fish blue", "red"]
    with pytest.raises(DataError, match="no texts"):
        read_text_inputs(b"\n \n", "empty.txt", fitted)


def test_token_ids_outside_the_embedding_stop_training_before_it_starts(tmp_path):
    """Integer ids from a table, an Embedding smaller than the data's ids: exit 2 naming file and sample."""
    from typer.testing import CliRunner

    from nnctl.cli.main import app

    rows = [[1, 2, 3, 0], [2, 3, 1, 1], [3, 1, 7, 0], [1, 1, 2, 1]]  # sample 3 holds id 7
    write_csv(tmp_path / "ids.csv", rows, header=("a", "b", "c", "label"))
    (tmp_path / "s.toml").write_text(
        'dtype = "float32"\n[data]\ntrain = "ids.csv"\ntarget = "label"\n'
        '[[model.layers]]\ntype = "Embedding"\ninput_dim = 5\noutput_dim = 2\n'
        '[[model.layers]]\ntype = "GlobalAveragePooling1D"\n'
        '[[model.layers]]\ntype = "Dense"\nunits = 1\nactivation = "sigmoid"\n'
        '[train]\nloss = "binary_crossentropy"\nepochs = 1\n'
    )
    r = CliRunner().invoke(app, ["train", str(tmp_path / "s.toml"), "-o", str(tmp_path / "m.h5")])
    assert r.exit_code == 2, r.output
    assert (
        "ids.csv: sample 3: token id 7 is outside the table of Embedding 'embedding', which takes ids 0 to 4"
        in r.output
    )
    assert not (tmp_path / "m.h5").exists()
