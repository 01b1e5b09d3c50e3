"""Write examples/data/reverse15-{train,test}.npz: reverse 15-digit sequences, laid out for teacher forcing.

The layout of examples/make_reverse.py at a length where one fixed vector no longer carries the source
(specs/seq2seq_attention.toml against specs/seq2seq_reverse.toml). Digits 0-9 uniform, START = 10:
    x[n] = [s_0 .. s_{L-1}, START, r_0 .. r_{L-2}]   (2L,) int64: source, then the decoder input
    y[n] = [r_0 .. r_{L-1}]                           (L,)  int64, r = reversed(s)
Usage: python examples/make_reverse_long.py [--length L]   (seeded: identical files on every run)
"""

import argparse
import pathlib

import numpy as np

N_TRAIN, N_TEST, DIGITS, START = 10000, 1000, 10, 10


def layout(src: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Teacher-forcing input x (N, 2L) and target y (N, L) for sources src (N, L)."""
    rev = src[:, ::-1]
    dec_in = np.concatenate([np.full((len(src), 1), START), rev[:, :-1]], axis=1)
    return np.concatenate([src, dec_in], axis=1).astype(np.int64), rev.astype(np.int64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--length", type=int, default=15)
    length = ap.parse_args().length
    out = pathlib.Path(__file__).resolve().parent / "data"
    out.mkdir(exist_ok=True)
    rng = np.random.default_rng(20240608 + length)
    # 10^L sources: draws collide with negligible probability for L >= 10; drop duplicates anyway
    src = rng.integers(0, DIGITS, size=(2 * (N_TRAIN + N_TEST), length))
    _, first = np.unique(src, axis=0, return_index=True)
    src = src[np.sort(first)][: N_TRAIN + N_TEST]
    for name, rows in (
        (f"reverse{length}-train.npz", slice(0, N_TRAIN)),
        (f"reverse{length}-test.npz", slice(N_TRAIN, None)),
    ):
        x, y = layout(src[rows])
        np.savez_compressed(out / name, x=x, y=y)
        print(f"wrote {out / name} (x {list(x.shape)}, y {list(y.shape)})")


if __name__ == "__main__":
    main()
