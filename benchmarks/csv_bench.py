"""CSV reading: nnctl's fast path (np.loadtxt) and its exact slow path against np.loadtxt, pandas and pyarrow.

    python benchmarks/csv_bench.py [--rows 500000] [--cols 20] [--repeats 3] [--file /tmp/bench.csv]

Generates a numeric CSV (not committed; written to --file, default under /tmp), then reads it in a fresh
process per contender and repeat (benchmarks/common.run_child), reporting the median time and the peak RSS of
the child. "baseline" is a child that only imports NumPy: its RSS is the floor under every row.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import log, run_child, worker_main

CONTENDERS = ("baseline", "nnctl", "nnctl_loader", "nnctl_slow", "loadtxt", "pandas", "pyarrow")


def generate(path: Path, rows: int, cols: int) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, cols - 1))
    y = rng.integers(0, 3, rows)
    header = ",".join([f"f{i}" for i in range(cols - 1)] + ["label"])
    with open(path, "w") as f:
        f.write(header + "\n")
        for start in range(0, rows, 50_000):
            block = np.column_stack([x[start : start + 50_000], y[start : start + 50_000]])
            np.savetxt(f, block, delimiter=",", fmt=["%.6g"] * (cols - 1) + ["%d"])


def worker(task: dict) -> dict:
    import numpy as np

    path, who = task["file"], task["who"]
    # libraries are imported before the clock starts: the rows time the reading alone
    if who == "pandas":
        import pandas as pd
    elif who == "pyarrow":
        from pyarrow import csv as pacsv
    elif who in ("nnctl", "nnctl_slow"):
        from nnctl.data.csvfile import header_of, read_columns
    elif who == "nnctl_loader":
        from nnctl.data import tabular
        from nnctl.data.preprocess import Preprocessor
    t0 = time.perf_counter()
    if who == "baseline":
        shape = [0, 0]
    elif who == "loadtxt":
        a = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64)
        shape = list(a.shape)
    elif who == "pandas":
        a = pd.read_csv(path).to_numpy(dtype=np.float64)
        shape = list(a.shape)
    elif who == "pyarrow":
        t = pacsv.read_csv(path)
        a = np.column_stack([c.to_numpy() for c in t.columns]).astype(np.float64, copy=False)
        shape = list(a.shape)
    elif who in ("nnctl", "nnctl_slow"):
        header = header_of(path)
        cols = read_columns(path, header, [], fast=who == "nnctl")
        assert cols.fast == (who == "nnctl")
        shape = [len(cols), len(cols.numbers)]
    else:  # the whole tabular loader: header, column encoding, float matrix of features, labels
        s = tabular.load({"train": path, "target": "label"}, Preprocessor("tabular", "sparse"))
        shape = list(s.x_train.shape)
    return {"who": who, "seconds": time.perf_counter() - t0, "shape": shape}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=500_000)
    ap.add_argument("--cols", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--file", default="/tmp/nnctl_csv_bench.csv")
    ap.add_argument("--only", default=",".join(CONTENDERS))
    ap.add_argument("--worker")
    args = ap.parse_args()
    if args.worker:
        sys.exit(worker_main(worker, args.worker))
    path = Path(args.file)
    if not path.exists():
        log(f"writing {path} ({args.rows} x {args.cols})")
        generate(path, args.rows, args.cols)
    size = path.stat().st_size / 2**20
    print(f"file: {args.rows} rows x {args.cols} columns, {size:.0f} MiB\n")
    print("| reader | median time | best | peak RSS | shape |")
    print("|---|---|---|---|---|")
    for who in args.only.split(","):
        runs = [run_child(__file__, {"file": str(path), "who": who}) for _ in range(args.repeats)]
        bad = [r for r in runs if "error" in r]
        if bad:
            print(f"| {who} | error: {bad[0]['error'][-200:]} | | | |")
            continue
        t = [r["seconds"] for r in runs]
        rss = max(r["rss_mib"] for r in runs)
        print(
            f"| {who} | {statistics.median(t):.2f} s | {min(t):.2f} s | {rss:.0f} MiB | {runs[0]['shape']} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
