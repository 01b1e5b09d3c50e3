"""Write examples/data/rnn_seed.npz: the seed notes' SimpleRNN example, five 3-step sequences.

    x (5, 3, 1) float64: rows 0.1 0.2 0.3 / 0.4 0.5 0.6 / ... / 1.3 1.4 1.5, one feature per step
    y (5, 1) float64:    0.4, 0.7, 1.0, 1.3, 1.6 (the next value after each sequence)
The numbers are exactly the notes' ``input_data`` and ``target_data``.
Usage: python examples/make_rnn_seed.py
"""

import pathlib

import numpy as np

INPUT_DATA = [
    [0.1, 0.2, 0.3],
    [0.4, 0.5, 0.6],
    [0.7, 0.8, 0.9],
    [1.0, 1.1, 1.2],
    [1.3, 1.4, 1.5],
]
TARGET_DATA = [[0.4], [0.7], [1.0], [1.3], [1.6]]


def main() -> None:
    out = pathlib.Path(__file__).resolve().parent / "data" / "rnn_seed.npz"
    out.parent.mkdir(exist_ok=True)
    x = np.array(INPUT_DATA, dtype=np.float64).reshape(5, 3, 1)  # the notes' input_data.reshape(5, 3, 1)
    y = np.array(TARGET_DATA, dtype=np.float64)
    np.savez(out, x=x, y=y)
    print(f"wrote {out} (x {list(x.shape)}, y {list(y.shape)})")


if __name__ == "__main__":
    main()
