"""Write examples/data/reverse-{train,test}.npz: reverse a 5-digit sequence, laid out for teacher forcing.

Each sample is one source s = (s_0 .. s_4), digits 0-9 drawn uniformly, every source distinct and no test
source in the training file. With r = reversed(s) and START = 10:
    x[n] = [s_0 .. s_4, START, r_0, r_1, r_2, r_3]   (10,) int64: source, then the decoder input
    y[n] = [r_0 .. r_4]                                (5,)  int64: decoder step t must output r_t
so the decoder input is the target shifted right by one with START in front (teacher forcing); at
predict time nnctl.decode.greedy_decode fills it with the model's own outputs instead.
Usage: python examples/make_reverse.py   (seeded: identical files on every run)
"""

import pathlib

import numpy as np

N_TRAIN, N_TEST, LENGTH, DIGITS, START = 10000, 1000, 5, 10, 10


def layout(src: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Teacher-forcing input x (N, 2L) and target y (N, L) for sources src (N, L)."""
    rev = src[:, ::-1]
    dec_in = np.concatenate([np.full((len(src), 1), START), rev[:, :-1]], axis=1)
    return np.concatenate([src, dec_in], axis=1).astype(np.int64), rev.astype(np.int64)


def main() -> None:
    out = pathlib.Path(__file__).resolve().parent / "data"
    out.mkdir(exist_ok=True)
    rng = np.random.default_rng(20240607)
    codes = rng.choice(DIGITS**LENGTH, N_TRAIN + N_TEST, replace=False)  # distinct sources
    src = (codes[:, None] // DIGITS ** np.arange(LENGTH - 1, -1, -1)) % DIGITS
    for name, rows in (("reverse-train.npz", slice(0, N_TRAIN)), ("reverse-test.npz", slice(N_TRAIN, None))):
        x, y = layout(src[rows])
        np.savez_compressed(out / name, x=x, y=y)
        print(f"wrote {out / name} (x {list(x.shape)}, y {list(y.shape)})")


if __name__ == "__main__":
    main()
