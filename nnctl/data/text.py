"""Text classification data: a CSV text column turned into fixed-length token ids, x (N, max_length) int64.

Tokens: ``level = "word"`` takes runs of letters/digits, keeping an apostrophe inside a word
(``don't``), so punctuation, spaces and ``_`` separate words; ``level = "char"`` takes every character
(spaces and punctuation included). ``lowercase`` (default true) lower-cases first.
Vocabulary, built from the TRAINING split only: id 0 = padding ("<pad>"), id 1 = ``oov_token``, then
the ``vocab_size - 2`` most frequent tokens, ties broken alphabetically, so the ids are deterministic.
A sequence longer than ``max_length`` loses tokens at its end (``truncating = "post"``) or start
("pre"); a shorter one gets 0s after (``padding = "post"``) or before ("pre") it.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import io
import re
from typing import TYPE_CHECKING

import numpy as np

from nnctl.data import Splits, _validation_split
from nnctl.data.readers import read_csv_table
from nnctl.errors import DataError

if TYPE_CHECKING:
    from nnctl.spec_sections import DataSection

WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")  # letters/digits; apostrophes only inside a word
PAD = "<pad>"
DEFAULTS = {
    "level": "word",
    "vocab_size": 10000,
    "max_length": 32,
    "lowercase": True,
    "oov_token": "<unk>",
    "padding": "post",
    "truncating": "post",
}


class Tokenizer:
    """Text -> ids (N, max_length) int64 with a frequency-ordered vocabulary; ``vocab[id]`` is the token."""

    def __init__(self, **settings):
        unknown = set(settings) - set(DEFAULTS)
        if unknown:
            raise DataError(f"data.tokenizer: unknown key {sorted(unknown)[0]!r}")
        self.settings = {**DEFAULTS, **settings}
        s = self.settings
        for key, low in (("vocab_size", 2), ("max_length", 1)):
            if not isinstance(s[key], int) or s[key] < low:
                raise DataError(f"data.tokenizer.{key}: expected an integer >= {low}, found {s[key]!r}")
        for key, ok in (("level", ("word", "char")), ("padding", ("pre", "post")), ("truncating", ("pre", "post"))):
            if s[key] not in ok:
                raise DataError(f"data.tokenizer.{key}: expected one of {', '.join(ok)}, found {s[key]!r}")
        self.vocab: list[str] = [PAD, s["oov_token"]]
        self.index: dict[str, int] = {}

    def tokens(self, text: str) -> list[str]:
        text = text.lower() if self.settings["lowercase"] else text
        return list(text) if self.settings["level"] == "char" else WORD.findall(text)

    def fit(self, texts) -> Tokenizer:
        counts = collections.Counter(t for text in texts for t in self.tokens(text))
        for special in self.vocab[:2]:  # a token spelled like a special one is that special id
            counts.pop(special, None)
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        self.vocab = self.vocab[:2] + [t for t, _ in ranked[: self.settings["vocab_size"] - 2]]
        self.index = {t: i for i, t in enumerate(self.vocab)}
        return self

    def encode(self, texts) -> np.ndarray:
        """ids[n] = [index.get(token, 1) ...] truncated and padded to max_length."""
        L, s = self.settings["max_length"], self.settings
        out = np.zeros((len(texts), L), dtype=np.int64)
        for n, text in enumerate(texts):
            ids = [self.index.get(t, 1) for t in self.tokens(text)]
            ids = ids[:L] if s["truncating"] == "post" else ids[max(len(ids) - L, 0) :]
            if ids:
                if s["padding"] == "post":
                    out[n, : len(ids)] = ids
                else:
                    out[n, L - len(ids) :] = ids
        return out

    def decode(self, ids) -> str:
        """Tokens of one id row without padding, joined by spaces (word level) or nothing (char level)."""
        ids = [i for i in np.asarray(ids).tolist() if i != 0]
        words = [self.vocab[i] if 0 <= i < len(self.vocab) else self.vocab[1] for i in ids]
        return ("" if self.settings["level"] == "char" else " ").join(words)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"vocab": np.array(self.vocab, dtype=str)}

    @classmethod
    def from_arrays(cls, settings: dict, arrays: dict) -> Tokenizer:
        tok = cls(**settings)
        tok.vocab = [str(v) for v in np.asarray(arrays["vocab"]).tolist()]
        tok.index = {t: i for i, t in enumerate(tok.vocab)}
        return tok


# -- loading ---------------------------------------------------------------------------------------
def _labels(raw: list[str], task: str, name: str, column: str) -> np.ndarray:
    """Regression targets as floats; class labels as ints when every one is an integer, else strings."""
    arr = np.array([r.strip() for r in raw])
    try:
        y = arr.astype(np.float64)
    except ValueError:
        if task == "regression":
            bad = next(i for i, v in enumerate(arr) if not _is_float(v))
            raise DataError(
                f"{name}: line {bad + 2}, column {column!r}: expected a number, found {arr[bad]!r}"
            ) from None
        return arr
    if task == "regression":
        return y.reshape(-1, 1)
    return y.astype(np.int64) if np.all(y == np.round(y)) else y


def _is_float(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def _read(path, data: DataSection, prep) -> tuple[list[str], np.ndarray]:
    header, rows = read_csv_table(path)
    col = prep.meta.get("text_column") or data.text
    if col not in header:
        raise DataError(f"{path}: no text column {col!r} (data.text); columns are {', '.join(header)}")
    target = prep.target_names[0] if prep.target_names else data.target
    if isinstance(target, list):
        if len(target) != 1:
            raise DataError(f"{path}: data.target: text data takes one label column, found {len(target)}")
        target = target[0]
    if target is None:
        others = [h for h in header if h != col]
        if not others:
            raise DataError(f"{path}: expected a label column besides the text column {col!r}")
        target = others[-1]
    elif isinstance(target, int) and not isinstance(target, bool):
        if not -len(header) <= target < len(header):
            raise DataError(f"{path}: target column index {target} is out of range ({len(header)} columns)")
        target = header[target]
    if target not in header or target == col:
        raise DataError(f"{path}: no label column {target!r} (data.target); columns are {', '.join(header)}")
    ti, ci = header.index(target), header.index(col)
    prep.meta["text_column"], prep.feature_names, prep.target_names = col, [col], [target]
    return [r[ci] for r in rows], _labels([r[ti] for r in rows], prep.task, str(path), target)


def load(data: DataSection, prep, seed: int = 0) -> Splits:
    """Token ids (N, max_length) int64 and labels; the vocabulary comes from the training split alone, so a
    validation split (and data.subset) is drawn here first, with the spec's ``seed`` as load_dataset would."""
    name = str(data.train)
    if prep.normalize != "none" or prep.rescale is not None:
        raise DataError(f"{name}: text inputs are token ids; data.normalize and data.rescale must be unset")
    fitted = "vocab" in prep.arrays  # evaluate --data: encode with the checkpoint's vocabulary
    texts, y = _read(data.train, data, prep)
    s = Splits(np.array(texts, dtype=object), y)
    val = data.validation
    if isinstance(val, str):
        vx, s.y_val = _read(val, data, prep)
        s.x_val = np.array(vx, dtype=object)
    elif val is not None and not fitted:
        # split here, before the vocabulary is built, with the same draws load_dataset would make
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2,)))
        if data.subset and data.subset < len(s.x_train):
            keep = np.sort(rng.permutation(len(s.x_train))[: data.subset])
            s.x_train, s.y_train = s.x_train[keep], s.y_train[keep]
        _validation_split(s, float(val.split), bool(val.stratify), rng, name)
    if data.test:
        tx, s.y_test = _read(data.test, data, prep)
        s.x_test = np.array(tx, dtype=object)
    if fitted:
        tok = Tokenizer.from_arrays(prep.meta["tokenizer"], prep.arrays)
    else:
        tok = Tokenizer(**dataclasses.asdict(data.tokenizer)).fit(s.x_train.tolist())
        prep.meta["tokenizer"] = dict(tok.settings)
        prep.arrays.update(tok.to_arrays())
    for attr in ("x_train", "x_val", "x_test"):
        if getattr(s, attr) is not None:
            setattr(s, attr, tok.encode(getattr(s, attr).tolist()))
    s.defaults = {"input_dim": len(tok.vocab)}
    return s


def read_text_inputs(data_bytes: bytes, name: str, prep) -> np.ndarray:
    """Ids (N, max_length) of raw texts, one per non-blank line, or of a CSV's text column.

    The input is read as CSV when its first line, split as CSV, names the training text column
    (``text`` or ``text,label``); otherwise every non-blank line is one text, commas and all.
    """
    text = data_bytes.decode("utf-8-sig")
    col = prep.meta.get("text_column", "text")
    lines = text.splitlines()
    first = next(csv.reader([lines[0]]), []) if lines else []
    if col in [f.strip() for f in first]:
        header, rows = read_csv_table(io.StringIO(text), name)
        texts = [r[header.index(col)] for r in rows]
    else:
        texts = [line for line in lines if line.strip()]
    if not texts:
        raise DataError(f"{name}: no texts; expected one text per line or a CSV with a {col!r} column")
    return Tokenizer.from_arrays(prep.meta["tokenizer"], prep.arrays).encode(texts)
