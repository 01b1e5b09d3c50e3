"""``nnctl predict`` on a long CSV from stdin: peak RSS, time to the first output byte, and total time.

    python benchmarks/predict_stream_bench.py [--rows 1000000] [--dir /tmp/nnctl_predict_bench]

Trains a 4-feature, 3-class Dense classifier for one epoch, writes a CSV of --rows rows (not committed;
under /tmp), then runs ``nnctl predict CKPT -`` with the file as stdin and stdout a pipe that this process
reads, in a fresh child each time: the peak RSS is the child's (wait4's rusage, as /usr/bin/time reports).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path


def setup(folder: Path, rows: int) -> Path:
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 4)), rng.integers(0, 3, 300)
    (folder / "train.csv").write_text(
        "a,b,c,d,label\n" + "".join(",".join(f"{v:.4f}" for v in r) + f",{c}\n" for r, c in zip(x, y))
    )
    (folder / "s.toml").write_text(
        'name = "bench"\n[data]\ntrain = "train.csv"\nnormalize = "standard"\n'
        '[[model.layers]]\ntype = "Dense"\nunits = 16\nactivation = "relu"\n'
        '[[model.layers]]\ntype = "Dense"\nunits = 3\nactivation = "softmax"\n'
        '[train]\nloss = "sparse_categorical_crossentropy"\nepochs = 1\n'
        '[output]\ncheckpoint = "bench.h5"\n'
    )
    subprocess.run([sys.executable, "-m", "nnctl", "train", "s.toml", "--quiet", "--force"], cwd=folder, check=True)
    big = folder / f"predict_{rows}.csv"
    if not big.exists():
        with open(big, "w") as f:
            f.write("a,b,c,d\n")
            for s in range(0, rows, 100_000):
                np.savetxt(f, rng.normal(size=(min(100_000, rows - s), 4)), fmt="%.5f", delimiter=",")
    return big


CHILD = """import resource, subprocess, sys, time
t0 = time.perf_counter()
with open(sys.argv[1], "rb") as f:
    p = subprocess.Popen(sys.argv[2:], stdin=f, stdout=subprocess.PIPE)
    first = p.stdout.read(1)
    t1 = time.perf_counter()
    lines = first.count(b"\\n") + sum(chunk.count(b"\\n") for chunk in iter(lambda: p.stdout.read(1 << 20), b""))
    code = p.wait()
t2 = time.perf_counter()
print(code, lines, t1 - t0, t2 - t0, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dir", default="/tmp/nnctl_predict_bench")
    args = ap.parse_args()
    folder = Path(args.dir)
    big = setup(folder, args.rows)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, big, sys.executable, "-m", "nnctl", "predict", str(folder / "bench.h5"), "-"],
        capture_output=True,
        text=True,
        cwd=folder,
        check=True,
    )
    code, lines, first, total, kb = out.stdout.split()
    print(
        f"rows {args.rows:,}  exit {code}  output lines {int(lines):,}  first byte {float(first):.2f} s  "
        f"total {float(total):.2f} s  peak RSS {int(kb) / 1024:.0f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
