"""Encode a table's feature columns into the model's one input row, fitted on the training split.

Per feature column, in the order of the features (the encoded columns are concatenated into one input):
  number    -> 1 column, missing cells filled by the column's strategy; + 1 column (1 = was missing) with
               ``indicator = true``
  category  -> onehot: 1 + K columns, the first the out-of-vocabulary slot, then the K training levels sorted
               ids:    1 column holding 0 (out of vocabulary) or 1..K
Fill values (mean, median, most frequent) and vocabularies come from the training split and are stored in
the checkpoint through the Preprocessor's ``meta``, so evaluate and predict never look at the training file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from nnctl.data.csvfile import MISSING_TOKENS, Columns
from nnctl.errors import DataError, SpecError, quote

if TYPE_CHECKING:
    from nnctl.spec_sections import DataSection

STRATEGIES = ("error", "mean", "median", "most_frequent", "constant")
ENCODINGS = ("onehot", "ids")


@dataclass
class Column:
    """One feature column's kind, encoding and missing-value rule, and what was fitted for it."""

    name: str
    kind: str = "number"  # number | category
    encoding: str = "onehot"  # categories only
    strategy: str = "error"
    indicator: bool = False
    value: float | str | None = None  # the constant of strategy = constant
    fill: float | str | None = None  # fitted: what a missing cell becomes
    vocab: list[str] = field(default_factory=list)  # fitted: training levels, sorted

    @property
    def width(self) -> int:
        base = 1 + len(self.vocab) if self.kind == "category" and self.encoding == "onehot" else 1
        return base + int(self.indicator)

    def output_names(self) -> list[str]:
        if self.kind == "category" and self.encoding == "onehot":
            names = [f"{self.name}=<unseen>"] + [f"{self.name}={v}" for v in self.vocab]
        else:
            names = [self.name]
        return names + ([f"{self.name}_missing"] if self.indicator else [])


def _most_frequent(values: np.ndarray):
    levels, counts = np.unique(values, return_counts=True)
    return levels[np.argmax(counts)].item()  # ties: the smallest level (np.unique sorts)


class TableEncoder:
    """Fits fill values and vocabularies on training columns; encodes any file's columns the same way."""

    def __init__(self, columns: list[Column]):
        self.columns = columns

    @property
    def numeric(self) -> list[str]:
        return [c.name for c in self.columns if c.kind == "number"]

    @property
    def text(self) -> list[str]:
        return [c.name for c in self.columns if c.kind == "category"]

    @property
    def missing_ok(self) -> set[str]:
        return {c.name for c in self.columns if c.strategy != "error"}

    @property
    def width(self) -> int:
        return sum(c.width for c in self.columns)

    @property
    def ids_only(self) -> bool:
        """Every column is integer ids: the input is an int64 matrix an Embedding can take."""
        return all(c.kind == "category" and c.encoding == "ids" and not c.indicator for c in self.columns)

    def output_names(self) -> list[str]:
        return [n for c in self.columns for n in c.output_names()]

    def scaled_mask(self) -> np.ndarray:
        """Which encoded columns input normalisation may shift and scale (numbers; not codes or flags)."""
        return np.array(
            [c.kind == "number" and not (c.indicator and i == 1) for c in self.columns for i in range(c.width)],
            dtype=bool,
        )

    def fit(self, cols: Columns) -> None:
        for c in self.columns:
            if c.kind == "category":
                raw = cols.text[c.name]
                present = raw[~_missing_mask(raw)]
                c.vocab = sorted(set(present.tolist()))
                if c.strategy in ("mean", "median", "most_frequent"):  # the mode is a category's centre
                    c.fill = _most_frequent(present) if len(present) else None
                elif c.strategy == "constant":
                    c.fill = "" if c.value is None else str(c.value)
                continue
            v = cols.numbers[c.name]
            present = v[~np.isnan(v)]
            if c.strategy == "constant":
                c.fill = 0.0 if c.value is None else float(c.value)
            elif c.strategy != "error":
                if not len(present):
                    raise DataError(
                        f"{cols.name}: column {quote(c.name)}: every value is missing; "
                        f"{c.strategy} has nothing to compute"
                    )
                c.fill = float({"mean": np.mean, "median": np.median}.get(c.strategy, _most_frequent)(present))

    def transform(self, cols: Columns) -> tuple[np.ndarray, dict[str, int]]:
        """(N, width) float64 inputs, and per category column how many cells held a level unseen in training."""
        n = len(cols)
        if all(c.kind == "number" and not c.indicator for c in self.columns):
            block = cols.block(self.numeric)
            if block is not None and not np.isnan(block).any():
                return block, {}  # numbers only, adjacent in the file: a view, no copy
        out = np.empty((n, self.width), dtype=np.float64)
        unseen: dict[str, int] = {}
        at = 0
        for c in self.columns:
            if c.kind == "number":
                v = cols.numbers[c.name]
                miss = np.isnan(v)
                out[:, at] = np.where(miss, c.fill if c.fill is not None else 0.0, v)
            else:
                raw = cols.text[c.name]
                miss = _missing_mask(raw)
                if miss.any() and c.strategy == "error":
                    row = int(np.nonzero(miss)[0][0])
                    raise DataError(
                        f"{cols.name}: line {row + cols.first_line}, column {quote(c.name)}: missing value "
                        f"{quote(str(raw[row]))}; set data.missing (a strategy) to fill it"
                    )
                if miss.any() and c.fill is not None:
                    raw = np.where(miss, c.fill, raw)
                ids = _lookup(c.vocab, raw)
                if (ids == 0).any():
                    unseen[c.name] = int((ids == 0).sum())
                if c.encoding == "ids":
                    out[:, at] = ids
                else:
                    block = out[:, at : at + len(c.vocab) + 1]
                    block[...] = 0.0
                    block[np.arange(n), ids] = 1.0
            if c.indicator:
                out[:, at + c.width - 1] = miss
            at += c.width
        return out, unseen

    def to_json(self) -> list[dict]:
        return [asdict(c) for c in self.columns]

    @classmethod
    def from_json(cls, items: list[dict]) -> TableEncoder:
        return cls([Column(**item) for item in items])


def _missing_mask(raw: np.ndarray) -> np.ndarray:
    return np.isin(np.char.lower(np.char.strip(raw.astype(str))), list(MISSING_TOKENS))


def _lookup(vocab: list[str], raw: np.ndarray) -> np.ndarray:
    """1 + the index of each cell in the sorted vocabulary, 0 for a level not in it."""
    if not vocab:
        return np.zeros(len(raw), dtype=np.int64)
    levels = np.array(vocab)
    pos = np.clip(np.searchsorted(levels, raw), 0, len(levels) - 1)
    return np.where(levels[pos] == raw, pos + 1, 0).astype(np.int64)


# -- from the spec ---------------------------------------------------------------------------------
def plan(data: DataSection, features: list[str], text_guess: set[str], source: str) -> list[Column]:
    """Each feature's Column from ``data.categorical`` and ``data.missing``; ``text_guess`` are columns
    found to hold only non-numeric values (auto-detected categories)."""
    declared = data.categorical
    encodings: dict[str, str] = {}
    if isinstance(declared, dict):
        for name, enc in declared.items():
            if enc not in ENCODINGS:
                raise SpecError(f"{source}: data.categorical.{name}: expected onehot or ids, found {quote(enc)}")
            encodings[str(name)] = enc
    elif isinstance(declared, list):
        encodings = {str(name): "onehot" for name in declared}
    for name in encodings:
        if name not in features:
            raise SpecError(
                f"{source}: data.categorical: {quote(name)} is not a feature column; features are "
                f"{', '.join(features[:20])}"
            )
    missing = data.missing
    per_column = (missing.columns if missing is not None else None) or {}
    # the table-wide rule; a key not given reads its default, the same as a rule without it
    base = (
        {}
        if missing is None
        else {"strategy": missing.strategy, "indicator": missing.indicator, "value": missing.value}
    )
    for name, rule in per_column.items():
        if name not in features:
            raise SpecError(f"{source}: data.missing.columns: {quote(name)} is not a feature column")
        extra = sorted(set(rule) - {"strategy", "indicator", "value"}) if isinstance(rule, dict) else ["(not a table)"]
        if extra:
            raise SpecError(
                f"{source}: data.missing.columns.{name}.{extra[0]}: unknown key; expected strategy, indicator or value"
            )
    out = []
    for f in features:
        rule = {**base, **(per_column.get(f) or {})}
        strategy = rule.get("strategy", "error")
        if strategy not in STRATEGIES:
            raise SpecError(
                f"{source}: data.missing.columns.{f}.strategy: expected one of "
                f"{', '.join(STRATEGIES)}, found {quote(strategy)}"
            )
        kind = "category" if f in encodings or f in text_guess else "number"
        out.append(
            Column(f, kind, encodings.get(f, "onehot"), strategy, bool(rule.get("indicator", False)), rule.get("value"))
        )
    return out
