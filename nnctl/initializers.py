"""Weight initializers (Keras names): host arrays drawn from the model's seeded generator.

fan_in and fan_out follow Keras: for a kernel of shape (*receptive, in, out), fan_in = prod(receptive)*in
and fan_out = prod(receptive)*out.
"""

from __future__ import annotations

import numpy as np


def fans(shape: tuple) -> tuple[int, int]:
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    return shape[-2] * receptive, shape[-1] * receptive


def _uniform(scale_fn):
    def init(shape, rng):
        limit = np.sqrt(scale_fn(*fans(shape)))
        return rng.uniform(-limit, limit, size=shape)
    return init


def _normal(scale_fn):
    def init(shape, rng):
        std = np.sqrt(scale_fn(*fans(shape))) / 0.87962566103423978  # truncated-normal correction, as Keras
        return np.clip(rng.normal(0.0, std, size=shape), -2 * std, 2 * std)
    return init


INITIALIZERS = {
    "glorot_uniform": _uniform(lambda fi, fo: 6.0 / (fi + fo)),
    "glorot_normal": _normal(lambda fi, fo: 2.0 / (fi + fo)),
    "he_uniform": _uniform(lambda fi, fo: 6.0 / fi),
    "he_normal": _normal(lambda fi, fo: 2.0 / fi),
    "lecun_uniform": _uniform(lambda fi, fo: 3.0 / fi),
    "lecun_normal": _normal(lambda fi, fo: 1.0 / fi),
    "uniform": lambda shape, rng: rng.uniform(-0.05, 0.05, size=shape),  # Keras's RandomUniform default
    "zeros": lambda shape, rng: np.zeros(shape),
    "ones": lambda shape, rng: np.ones(shape),
    "orthogonal": None,  # filled below
}


def _orthogonal(shape, rng):
    rows, cols = int(np.prod(shape[:-1])), shape[-1]
    a = rng.normal(size=(max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    q = q if rows >= cols else q.T
    return q[:rows, :cols].reshape(shape)


INITIALIZERS["orthogonal"] = _orthogonal
NAMES = sorted(INITIALIZERS)


def initialize(name: str, shape: tuple, rng: np.random.Generator) -> np.ndarray:
    return INITIALIZERS[str(name).lower()](tuple(int(s) for s in shape), rng)
