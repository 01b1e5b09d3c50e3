"""Training on an HDF5 file larger than memory should allow: peak RSS and time of one streamed epoch.

    python benchmarks/stream_bench.py [--gb 4] [--features 1024] [--file /tmp/nnctl_stream.h5]

Generates a float32 HDF5 file of about --gb GB (not committed; under /tmp), then trains one epoch of a
Dense(1) regression with ``data.stream = "batches"`` and ``normalize = "standard"`` (so one statistics pass
and one training pass read the whole file) in a fresh process per mode, reporting the child's peak RSS:
``shuffle = false`` (file order), ``shuffle_buffer = 8192`` (chunk shuffle: 256-row chunks of 1 MiB, windows
of 32 chunks).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import log, run_child, worker_main

MODES = {"file order": {"shuffle": False, "buffer": 0}, "chunk shuffle": {"shuffle": True, "buffer": 8192}}


def generate(path: Path, gb: float, feats: int) -> int:
    import h5py
    import numpy as np

    rows = int(gb * 1e9 / (4 * feats))
    rng = np.random.default_rng(0)
    block = rng.standard_normal((8192, feats), dtype=np.float32)
    w = rng.normal(size=feats).astype(np.float32)
    with h5py.File(path, "w") as f:
        dx = f.create_dataset("x", (rows, feats), dtype="f4", chunks=(256, feats))
        dy = f.create_dataset("y", (rows,), dtype="f4")
        for s in range(0, rows, len(block)):
            n = min(len(block), rows - s)
            b = block[:n] + np.float32((s // len(block)) % 5)
            dx[s : s + n] = b
            dy[s : s + n] = b @ w
    return rows


def worker(task: dict) -> dict:
    from nnctl import run, spec

    raw = {
        "seed": 0,
        "data": {"train": task["file"], "stream": "batches", "normalize": "standard", "shuffle_buffer": task["buffer"]},
        "model": {"layers": [{"type": "Dense", "units": 1}]},
        "train": {"loss": "mse", "epochs": 1, "batch_size": 1024, "shuffle": task["shuffle"]},
        "output": {"checkpoint": task["out"]},
    }
    t0 = time.perf_counter()
    done = run.train(spec.validate(raw, "bench"))
    return {"seconds": time.perf_counter() - t0, "loss": done["metrics"].get("loss")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=4.0)
    ap.add_argument("--features", type=int, default=1024)
    ap.add_argument("--file", default="/tmp/nnctl_stream.h5")
    ap.add_argument("--modes", default=",".join(MODES), help="comma-separated names from MODES")
    ap.add_argument("--worker")
    args = ap.parse_args()
    if args.worker:
        sys.exit(worker_main(worker, args.worker))
    path = Path(args.file)
    if not path.exists():
        log(f"writing {path} (~{args.gb} GB)")
        generate(path, args.gb, args.features)
    size = path.stat().st_size / 2**30
    print(f"file: {size:.2f} GiB, {args.features} float32 features\n")
    print("| mode | one epoch (stats pass + training) | peak RSS |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.modes.split(","):
            mode = MODES[name]
            r = run_child(__file__, {"file": str(path), "out": f"{tmp}/m.h5", **mode}, timeout=1800)
            if "error" in r:
                print(f"| {name} | error: {r['error'][-200:]} | |")
                continue
            print(f"| {name} | {r['seconds']:.1f} s | {r['rss_mib']:.0f} MiB |", flush=True)


if __name__ == "__main__":
    main()
