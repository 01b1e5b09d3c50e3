"""Synthetic ratings with latent structure for the recommender seed task (specs/recommender.toml).

Each user u and item i has a latent vector (K = 3) and a bias; a rating is
    r = clip(3.5 + b_u + b_i + p_u . q_i + noise, 1, 5), rounded to a half star,
so a model that learns user and item embeddings can beat the global mean by a wide margin.
Writes examples/data/ratings-train.csv and ratings-test.csv (user_id,item_id,rating; ids from 0), and
prints the global-mean baseline's test RMSE. Deterministic: the same files for the same seed.

    python examples/make_ratings.py [--users 300] [--items 200] [--per-user 40] [--seed 0]
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np


def make(users: int, items: int, per_user: int, seed: int, k: int = 3):
    """(user ids, item ids, ratings) of ``users * per_user`` distinct (user, item) pairs."""
    rng = np.random.default_rng(seed)
    p = rng.normal(0, 0.7, (users, k))
    q = rng.normal(0, 0.7, (items, k))
    bu, bi = rng.normal(0, 0.3, users), rng.normal(0, 0.3, items)
    u = np.repeat(np.arange(users), per_user)
    i = np.concatenate([rng.choice(items, per_user, replace=False) for _ in range(users)])
    raw = 3.5 + bu[u] + bi[i] + np.einsum("nk,nk->n", p[u], q[i]) + rng.normal(0, 0.3, len(u))
    return u, i, np.round(np.clip(raw, 1, 5) * 2) / 2


def write(path: pathlib.Path, u, i, r) -> None:
    with open(path, "w") as f:
        f.write("user_id,item_id,rating\n")
        f.writelines(f"{a},{b},{c:g}\n" for a, b, c in zip(u, i, r))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=300)
    ap.add_argument("--items", type=int, default=200)
    ap.add_argument("--per-user", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(pathlib.Path(__file__).parent / "data"))
    a = ap.parse_args()
    u, i, r = make(a.users, a.items, a.per_user, a.seed)
    order = np.random.default_rng(a.seed + 1).permutation(len(u))
    cut = int(0.8 * len(u))
    train, test = order[:cut], order[cut:]
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    write(out / "ratings-train.csv", u[train], i[train], r[train])
    write(out / "ratings-test.csv", u[test], i[test], r[test])
    mean = r[train].mean()
    rmse = float(np.sqrt(np.mean((r[test] - mean) ** 2)))
    print(
        f"wrote {len(train)} training and {len(test)} test ratings to {out}; "
        f"global-mean ({mean:.4f}) baseline test RMSE {rmse:.4f}"
    )


if __name__ == "__main__":
    main()
