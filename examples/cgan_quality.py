"""Does a conditional GAN draw the digit it is asked for? An nnctl classifier reads n samples of each class.

Usage: python examples/cgan_quality.py runs/cgan-mnist.h5 runs/mnist-cnn.h5 [--n 100] [--seed 1]

For each class k, n samples are drawn with the label k (``nnctl generate --label k``, one seed for all
classes); the classifier's predicted labels give the fraction classified as k (per class and overall), the
mean max-probability (confidence) and the confusion counts (row: requested class, column: predicted).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from nnctl import gan, run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("gan_checkpoint")
    ap.add_argument("classifier_checkpoint")
    ap.add_argument("--n", type=int, default=100, help="samples per class")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    classifier = run.restore(args.classifier_checkpoint, "cpu")
    _, info = gan.generate(args.gan_checkpoint, 1, args.seed, "cpu")
    classes = info["rows"]
    confusion = np.zeros((len(classes), len(classes)), dtype=np.int64)
    confidence = []
    for k in classes:
        x, _ = gan.generate(args.gan_checkpoint, args.n, args.seed, "cpu", labels=[k])  # pixel units
        p = run.predict(classifier, x)[0]
        confusion[k] = np.bincount(p.argmax(axis=1), minlength=len(classes))
        confidence.append(float(p.max(axis=1).mean()))
    per_class = (np.diag(confusion) / confusion.sum(axis=1)).round(3).tolist()
    out = {
        "samples_per_class": args.n,
        "seed": args.seed,
        "fraction_as_requested": float(np.trace(confusion) / confusion.sum()),
        "per_class": per_class,
        "mean_max_probability": float(np.mean(confidence)),
        "confusion": confusion.tolist(),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
