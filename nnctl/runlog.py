"""The run folder beside a checkpoint: resolved spec, per-epoch metrics (CSV and JSON lines), summary.

The summary says whether the run overfit: the epoch where validation loss stopped improving, the gap
between training and validation loss at the end, and which epoch's weights the checkpoint holds.
"""

from __future__ import annotations

import csv
import io
import json
import pathlib
from typing import TYPE_CHECKING, Any

from nnctl.fs import atomic_write
from nnctl.spec_table import to_plain

if TYPE_CHECKING:
    from nnctl.spec_model import Spec


def default_run_dir(checkpoint: str) -> pathlib.Path:
    p = pathlib.Path(checkpoint)
    return p.with_name(p.stem + ".run")


def _write_text(path: pathlib.Path, text: str) -> None:
    atomic_write(path, lambda tmp: pathlib.Path(tmp).write_text(text, encoding="utf-8"))


def overfit_summary(history: dict, weights_epoch: int) -> dict:
    out: dict[str, Any] = {"epochs": len(history.get("loss", [])), "checkpoint_epoch": weights_epoch}
    val = history.get("val_loss")
    if val:
        best = min(range(len(val)), key=val.__getitem__)
        out.update(
            best_val_loss=val[best],
            best_val_epoch=best + 1,
            final_val_loss=val[-1],
            final_loss=history["loss"][-1],
            gap=val[-1] - history["loss"][-1],
        )
        out["overfit"] = best + 1 < len(val) and val[-1] > val[best]
        out["note"] = (
            f"validation loss stopped improving after epoch {best + 1}; final gap val - train = {out['gap']:.4g}"
            if out["overfit"]
            else f"validation loss still at its best in the last epoch; gap val - train = {out['gap']:.4g}"
        )
    return out


def write_run(run_dir, spec: Spec | dict, history: dict, summary: dict) -> None:
    run_dir = pathlib.Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_text(run_dir / "spec.json", json.dumps(to_plain(spec), indent=2) + "\n")  # the stored form
    names = list(history)
    n = max((len(v) for v in history.values()), default=0)  # a GAN logs d_loss and g_loss, no "loss"
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["epoch", *names])
    lines = []
    for i in range(n):
        row = {k: history[k][i] for k in names if i < len(history[k])}
        w.writerow([i + 1, *[row.get(k, "") for k in names]])
        lines.append(json.dumps({"epoch": i + 1, **row}))
    _write_text(run_dir / "metrics.csv", buf.getvalue())
    _write_text(run_dir / "metrics.jsonl", "".join(line + "\n" for line in lines))
    _write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")


def read_history(run_dir) -> dict:
    """History from a run folder's metrics.jsonl (for plot and compare)."""
    hist: dict = {}
    for line in (pathlib.Path(run_dir) / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        for k, v in row.items():
            if k != "epoch":
                hist.setdefault(k, []).append(v)
    return hist
