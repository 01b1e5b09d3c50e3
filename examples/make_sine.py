"""Write examples/data/sine-train.csv (2000 rows) and sine-test.csv (500 rows): a noisy sine wave.

Row t (continuing across the two files, so the test file follows the training file in time):
    cycle = cos(2*pi*t/50)                                             (a noise-free clock feature)
    value = (1 + 0.3*sin(2*pi*t/470)) * sin(2*pi*t/50) + N(0, 0.1^2)  (the series to forecast)
The slow amplitude swell makes the last value alone a poor forecast; the target is the last column.
Usage: python examples/make_sine.py   (seeded: the files are identical on every run)
"""

import pathlib

import numpy as np

N_TRAIN, N_TEST, PERIOD, SWELL, NOISE = 2000, 500, 50, 470, 0.1


def main() -> None:
    out = pathlib.Path(__file__).resolve().parent / "data"
    out.mkdir(exist_ok=True)
    rng = np.random.default_rng(20240601)
    t = np.arange(N_TRAIN + N_TEST)
    cycle = np.cos(2 * np.pi * t / PERIOD)
    value = (1 + 0.3 * np.sin(2 * np.pi * t / SWELL)) * np.sin(2 * np.pi * t / PERIOD) + rng.normal(0, NOISE, len(t))
    for name, rows in (("sine-train.csv", slice(0, N_TRAIN)), ("sine-test.csv", slice(N_TRAIN, None))):
        lines = ["cycle,value"] + [f"{c:.6f},{v:.6f}" for c, v in zip(cycle[rows], value[rows])]
        (out / name).write_text("\n".join(lines) + "\n")
        print(f"wrote {out / name} ({len(lines) - 1} rows)")


if __name__ == "__main__":
    main()
