"""How good are a GAN's MNIST digits? A classifier's confidence and the spread of its labels, against real digits.

Usage: python examples/gan_quality.py runs/dcgan-mnist.h5 runs/mnist-cnn.h5 [--n 1000] [--seed 1]

For n generated samples and n real test digits (a seeded random choice from t10k), an nnctl classifier
gives class probabilities p. Reported: the mean max-probability (confidence: are the samples clearly one
digit?) and the entropy in bits of the histogram of predicted labels (diversity: log2(10) = 3.32 when every
digit is equally common; a collapsed generator scores near 0).
"""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np

from nnctl import gan, run
from nnctl.data.readers import read_idx

TEST_IMAGES = pathlib.Path(__file__).parent / "data" / "mnist" / "t10k-images-idx3-ubyte.gz"


def scores(probabilities: np.ndarray) -> dict:
    labels = probabilities.argmax(axis=1)
    hist = np.bincount(labels, minlength=probabilities.shape[1]) / len(labels)
    nonzero = hist[hist > 0]
    return {
        "mean_max_probability": float(probabilities.max(axis=1).mean()),
        "label_entropy_bits": max(0.0, float(-(nonzero * np.log2(nonzero)).sum())),  # no -0.0
        "label_histogram": [int(c) for c in np.bincount(labels, minlength=probabilities.shape[1])],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("gan_checkpoint")
    ap.add_argument("classifier_checkpoint")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    fake, _ = gan.generate(args.gan_checkpoint, args.n, args.seed, "cpu")  # pixel units, as the classifier reads
    real = read_idx(TEST_IMAGES)[..., None].astype(np.float64)
    real = real[np.random.default_rng(args.seed).choice(len(real), args.n, replace=False)]
    classifier = run.restore(args.classifier_checkpoint, "cpu")
    out = {name: scores(run.predict(classifier, x)[0]) for name, x in (("generated", fake), ("real", real))}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
