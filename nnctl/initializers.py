"""Weight initializers (Keras names and defaults): host arrays drawn from the model's seeded generator.

fan_in and fan_out follow Keras: for a kernel of shape (*receptive, in, out), fan_in = prod(receptive)*in
and fan_out = prod(receptive)*out. VarianceScaling is the general form:
  scale' = scale / n,  n = fan_in | fan_out | (fan_in + fan_out) / 2  (``mode``)
  uniform: U[-sqrt(3 scale'), sqrt(3 scale')];  truncated_normal: N(0, scale' / 0.8796^2) cut at 2 sigma
The Glorot, He and LeCun families are VarianceScaling with fixed settings, as in Keras.
A spec names one as a string (``"he_normal"``, ``"HeNormal"``) or a table (``{type = "constant", value = 0.1}``).
"""

from __future__ import annotations

from typing import Annotated

import numpy as np

from nnctl.fields import Choices, NameOf, NonNegativeFloat, PositiveFloat
from nnctl.registry import Registry

INITIALIZERS: Registry[type] = Registry("initializer")
#: annotation of a layer key that names an initializer
InitializerName = Annotated[str | dict, NameOf("initializer")]


def fans(shape: tuple) -> tuple[int, int]:
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    return shape[-2] * receptive, shape[-1] * receptive


class Initializer:
    """``init(shape, rng) -> float64 host array``; constructor keys are the spec table's keys."""

    def __call__(self, shape: tuple, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError


@INITIALIZERS.register("variance_scaling")
class VarianceScaling(Initializer):
    def __init__(
        self,
        scale: PositiveFloat = 1.0,
        mode: Annotated[str, Choices(("fan_in", "fan_out", "fan_avg"))] = "fan_in",
        distribution: Annotated[
            str, Choices(("truncated_normal", "untruncated_normal", "uniform"))
        ] = "truncated_normal",
    ):
        self.scale, self.mode, self.distribution = scale, mode, distribution

    def __call__(self, shape, rng):
        fan_in, fan_out = fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        var = self.scale / max(1.0, n)
        if self.distribution == "uniform":
            limit = np.sqrt(3 * var)
            return rng.uniform(-limit, limit, size=shape)
        if self.distribution == "untruncated_normal":
            return rng.normal(0.0, np.sqrt(var), size=shape)
        std = np.sqrt(var) / 0.87962566103423978  # truncated-normal correction, as Keras
        return np.clip(rng.normal(0.0, std, size=shape), -2 * std, 2 * std)


def _fixed(name: str, scale: float, mode: str, distribution: str) -> None:
    """Register a VarianceScaling with fixed settings under ``name`` (no keys but ``seed``-free defaults)."""

    def __init__(self):
        VarianceScaling.__init__(self, scale, mode, distribution)

    cls = type("".join(w.title() for w in name.split("_")), (VarianceScaling,), {"__init__": __init__})
    INITIALIZERS.add(name, cls)


_fixed("glorot_uniform", 1.0, "fan_avg", "uniform")
_fixed("glorot_normal", 1.0, "fan_avg", "truncated_normal")
_fixed("he_uniform", 2.0, "fan_in", "uniform")
_fixed("he_normal", 2.0, "fan_in", "truncated_normal")
_fixed("lecun_uniform", 1.0, "fan_in", "uniform")
_fixed("lecun_normal", 1.0, "fan_in", "truncated_normal")


@INITIALIZERS.register("random_uniform", "uniform")
class RandomUniform(Initializer):
    def __init__(self, minval: float = -0.05, maxval: float = 0.05):
        if maxval < minval:
            raise ValueError(f"maxval ({maxval}) must be >= minval ({minval})")
        self.minval, self.maxval = minval, maxval

    def __call__(self, shape, rng):
        return rng.uniform(self.minval, self.maxval, size=shape)


@INITIALIZERS.register("random_normal", "normal")
class RandomNormal(Initializer):
    def __init__(self, mean: float = 0.0, stddev: NonNegativeFloat = 0.05):
        self.mean, self.stddev = mean, stddev

    def __call__(self, shape, rng):
        return rng.normal(self.mean, self.stddev, size=shape)


@INITIALIZERS.register("truncated_normal")
class TruncatedNormal(RandomNormal):
    """N(mean, stddev^2) with draws beyond 2 stddev redrawn (Keras's rule)."""

    def __call__(self, shape, rng):
        out = rng.normal(0.0, 1.0, size=shape)
        bad = np.abs(out) > 2
        while bad.any():
            out[bad] = rng.normal(0.0, 1.0, size=int(bad.sum()))
            bad = np.abs(out) > 2
        return self.mean + self.stddev * out


@INITIALIZERS.register("constant")
class Constant(Initializer):
    def __init__(self, value: float = 0.0):
        self.value = value

    def __call__(self, shape, rng):
        return np.full(shape, self.value, dtype=np.float64)


@INITIALIZERS.register("zeros")
class Zeros(Constant):
    def __init__(self):
        Constant.__init__(self, 0.0)


@INITIALIZERS.register("ones")
class Ones(Constant):
    def __init__(self):
        Constant.__init__(self, 1.0)


@INITIALIZERS.register("identity")
class Identity(Initializer):
    """gain * I for a 2-D kernel."""

    def __init__(self, gain: float = 1.0):
        self.gain = gain

    def __call__(self, shape, rng):
        if len(shape) != 2:
            raise ValueError(f"the identity initializer needs a 2-D kernel, found shape {list(shape)}")
        return self.gain * np.eye(*shape)


@INITIALIZERS.register("orthogonal")
class Orthogonal(Initializer):
    def __init__(self, gain: float = 1.0):
        self.gain = gain

    def __call__(self, shape, rng):
        rows, cols = int(np.prod(shape[:-1])), shape[-1]
        a = rng.normal(size=(max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q *= np.sign(np.diag(r))
        q = q if rows >= cols else q.T
        return self.gain * q[:rows, :cols].reshape(shape)


NAMES = INITIALIZERS.names()


def get(spec: str | dict) -> Initializer:
    """The initializer a spec value names: ``"he_normal"`` or ``{type = "random_normal", stddev = 0.1}``."""
    if isinstance(spec, dict):
        kwargs = {k: v for k, v in spec.items() if k != "type"}
        return INITIALIZERS.get(spec["type"])(**kwargs)
    return INITIALIZERS.get(spec)()


def initialize(spec: str | dict, shape: tuple, rng: np.random.Generator) -> np.ndarray:
    return get(spec)(tuple(int(s) for s in shape), rng)
