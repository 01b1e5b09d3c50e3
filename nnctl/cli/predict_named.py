"""``nnctl predict`` for a model with named inputs or outputs: one column group (CSV) or key (JSON lines) per
output, read from the named inputs' CSV column groups or npz/h5 arrays."""

from __future__ import annotations

import csv
import io
import json

import numpy as np

from nnctl.errors import SpecError


def check_flags(
    checkpoint: str, format_: str, top_k, preprocessed: bool, reconstruct: bool, embed, score: bool = False
) -> None:
    """The flags a named-outputs prediction takes: --format csv or jsonl, --proba."""
    for flag, given in (
        ("--top-k", top_k is not None),
        ("--preprocessed", preprocessed),
        ("--reconstruct", reconstruct),
        ("--embed", embed is not None),
        ("--score", score),
    ):
        if given:
            raise SpecError(f"{flag}: not available for {checkpoint}, a model with named inputs or outputs")
    if format_ == "npy":
        raise SpecError(f"--format: expected csv or jsonl for {checkpoint} (one array per output), found 'npy'")


def _values(a: np.ndarray) -> np.ndarray:
    return a.reshape(len(a), -1)


def render(results: dict, fmt: str, proba: bool) -> str:
    """{output name: (outputs, decoded)} as CSV (columns <name> or <name>_<i>, with --proba
    <name>_proba_<k>) or JSON lines (one key per output: a number or a list)."""
    names = {k: k or "prediction" for k in results}
    classes = {k for k, (p, d) in results.items() if d.shape != p.shape}
    n = len(next(iter(results.values()))[1])
    if fmt == "jsonl":
        lines = []
        for i in range(n):
            row: dict = {}
            for k, (p, d) in results.items():
                v = _values(d)[i]
                row[names[k]] = _py(v[0]) if v.size == 1 else [_py(e) for e in v]
                if proba and k in classes:
                    row[f"{names[k]}_proba"] = [float(e) for e in _values(p)[i]]
            lines.append(json.dumps(row))
        return "".join(line + "\n" for line in lines)
    head: list[str] = []
    blocks: list[np.ndarray] = []
    for k, (p, d) in results.items():
        v = _values(d)
        head += [names[k]] if v.shape[1] == 1 else [f"{names[k]}_{j}" for j in range(v.shape[1])]
        blocks.append(v)
        if proba and k in classes:
            pv = _values(p)
            head += [f"{names[k]}_proba_{j}" for j in range(pv.shape[1])]
            blocks.append(pv)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(head)
    for i in range(n):
        w.writerow([_cell(e) for b in blocks for e in b[i]])
    return buf.getvalue()


def _py(v):
    return v.item() if hasattr(v, "item") else v


def _cell(v):
    v = _py(v)
    return f"{v:.6g}" if isinstance(v, float) else v
