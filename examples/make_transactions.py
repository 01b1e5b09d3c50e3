"""Write synthetic card transactions with a few percent of planted anomalies (examples/data/transactions-*.csv).

Normal rows follow per-category habits (amount, hour, distance from home, card present); anomalies are of
four kinds, some extreme in one column, some only in how columns go together:
  amount   a purchase 15-40 times the category's usual amount, at night
  combo    a card-present online purchase, or a grocery or fuel purchase hundreds of km from home
  burst    many transactions in the last 24 hours, of small amounts
  newcard  a days-old account buying travel far away for a large amount
``is_anomaly`` marks them (1); nnctl never trains on it (data.anomaly_label), evaluate scores against it.
The training file holds ordinary rows only by default (--train-rate 0: the autoencoder learns what normal
looks like, as in novelty detection); the test file holds --rate of anomalies.

    python examples/make_transactions.py [--train 8000] [--test 3000] [--rate 0.03] [--train-rate 0] [--seed 0]
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np

CATEGORIES = ("grocery", "fuel", "restaurant", "online", "travel")
P_CATEGORY = (0.34, 0.18, 0.2, 0.2, 0.08)
AMOUNT = {"grocery": 45.0, "fuel": 55.0, "restaurant": 35.0, "online": 60.0, "travel": 400.0}  # medians
HOUR = {"grocery": (17, 3), "fuel": (12, 4), "restaurant": (19.5, 2), "online": (21, 3), "travel": (10, 3)}
COLUMNS = ("amount", "hour", "category", "distance_km", "card_present", "tx_last_24h", "account_age_days", "is_anomaly")


def normal_rows(rng: np.random.Generator, n: int) -> dict:
    """``n`` ordinary transactions, column by column."""
    cat = rng.choice(len(CATEGORIES), size=n, p=P_CATEGORY)
    names = np.array(CATEGORIES)[cat]
    amount = np.array([AMOUNT[c] for c in names]) * rng.lognormal(0.0, 0.45, n)
    hour = np.clip([rng.normal(*HOUR[c]) for c in names], 6.0, 23.9)  # shops and cards sleep at night
    online, travel = names == "online", names == "travel"
    distance = np.where(online, 0.0, rng.lognormal(1.5, 0.6, n))
    distance = np.where(travel, rng.lognormal(5.5, 0.5, n), distance)
    card = np.where(online, 0, (rng.random(n) < 0.97).astype(int))
    return {
        "amount": amount,
        "hour": hour,
        "category": names,
        "distance_km": distance,
        "card_present": card,
        "tx_last_24h": rng.poisson(2.0, n),
        "account_age_days": rng.integers(60, 3650, n),
        "is_anomaly": np.zeros(n, int),
    }


def plant(rng: np.random.Generator, rows: dict, idx: np.ndarray) -> None:
    """Turn rows ``idx`` into anomalies, a quarter of each kind."""
    for k, i in enumerate(np.array_split(rng.permutation(idx), 4)):
        m = len(i)
        if k == 0:  # amount: far above the category's habit, at night
            base = np.array([AMOUNT[c] for c in rows["category"][i]])
            rows["amount"][i] = base * rng.uniform(15, 40, m)
            rows["hour"][i] = rng.uniform(1, 5, m)
        elif k == 1:  # combo: every value ordinary on its own, not together
            half = m // 2
            on, far = i[:half], i[half:]
            rows["category"][on], rows["distance_km"][on], rows["card_present"][on] = "online", 0.0, 1
            rows["category"][far] = rng.choice(["grocery", "fuel"], len(far))
            rows["distance_km"][far] = rng.uniform(300, 900, len(far))
            rows["card_present"][far] = 1
        elif k == 2:  # burst: a card tested with many small payments
            rows["tx_last_24h"][i] = rng.integers(18, 35, m)
            rows["amount"][i] = rng.uniform(1, 5, m)
        else:  # newcard: a fresh account spending big far away
            rows["account_age_days"][i] = rng.integers(0, 4, m)
            rows["category"][i], rows["card_present"][i] = "travel", 1
            rows["amount"][i] = rng.uniform(2500, 6000, m)
            rows["distance_km"][i] = rng.uniform(2000, 8000, m)
        rows["is_anomaly"][i] = 1


def table(rng: np.random.Generator, n: int, rate: float) -> dict:
    rows = normal_rows(rng, n)
    plant(rng, rows, rng.choice(n, size=int(round(n * rate)), replace=False))
    return rows


def write(path: pathlib.Path, rows: dict) -> None:
    lines = [",".join(COLUMNS)]
    for i in range(len(rows["amount"])):
        lines.append(
            f"{rows['amount'][i]:.2f},{rows['hour'][i]:.2f},{rows['category'][i]},"
            f"{rows['distance_km'][i]:.1f},{rows['card_present'][i]},{rows['tx_last_24h'][i]},"
            f"{rows['account_age_days'][i]},{rows['is_anomaly'][i]}"
        )
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=8000)
    ap.add_argument("--test", type=int, default=3000)
    ap.add_argument("--rate", type=float, default=0.03, help="fraction of planted anomalies in each file")
    ap.add_argument("--train-rate", type=float, default=0.0, help="fraction of anomalies in the training file")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(pathlib.Path(__file__).parent / "data"))
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, n, rate in (("train", a.train, a.train_rate), ("test", a.test, a.rate)):
        rows = table(rng, n, rate)
        write(out / f"transactions-{name}.csv", rows)
        print(f"{out / f'transactions-{name}.csv'}: {n} rows, {int(rows['is_anomaly'].sum())} anomalies")


if __name__ == "__main__":
    main()
