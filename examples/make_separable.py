"""Write examples/data/separable.csv: two linearly separable Gaussian blobs (seeded), for the perceptron.

Class 1 lies above the line x2 = 0.5 x1 + 0.2 with a margin of at least 0.3, class 0 below it.
"""

import csv
import pathlib

import numpy as np

rng = np.random.default_rng(7)
pts = rng.uniform(-2, 2, size=(400, 2))
margin = pts[:, 1] - (0.5 * pts[:, 0] + 0.2)
pts = pts[np.abs(margin) > 0.3][:200]
labels = (pts[:, 1] > 0.5 * pts[:, 0] + 0.2).astype(int)
out = pathlib.Path(__file__).parent / "data" / "separable.csv"
with out.open("w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["x1", "x2", "label"])
    for (a, b), y in zip(pts, labels):
        w.writerow([f"{a:.4f}", f"{b:.4f}", y])
print(f"wrote {out} ({len(pts)} rows)")
