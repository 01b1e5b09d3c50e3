"""Optimizers (Keras names and defaults) over the model's flat parameter and gradient buffers.

Each update is a few whole-buffer operations, whatever the number of layers; slots (momentum,
moments) are flat buffers of the same size, saved in checkpoints by name.
- sgd:     v = m v - lr g;  w += v  (nesterov: w += m v - lr g); m = 0: w -= lr g
- rmsprop: s = rho s + (1 - rho) g^2;  w -= lr g / (sqrt(s) + eps)  (centered: s - mean^2)
- adam:    m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  w -= lr_t m / (sqrt(v) + eps),
           lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)  (Keras's form of the bias correction)
- adamw:   adam with w -= lr wd w first (decoupled weight decay; adam takes ``weight_decay`` too, as Keras 3)
- adagrad: s += g^2;  w -= lr g / (sqrt(s) + eps)
- perceptron: sgd with learning rate 1 (Rosenblatt's rule with the perceptron loss)
"""

from __future__ import annotations

import math

from typing import Annotated

from nnctl import backend as B
from nnctl.fields import Fraction, NonNegativeFloat, PositiveFloat, Range
from nnctl.registry import Registry

Beta = Annotated[float, Range(0, 1, hi_open=True)]


class Optimizer:
    slot_names: tuple[str, ...] = ()

    def __init__(self, learning_rate: PositiveFloat = 0.01, clipnorm: PositiveFloat | None = None,
                 global_clipnorm: PositiveFloat | None = None, clipvalue: PositiveFloat | None = None):
        self.learning_rate = float(learning_rate)
        self.clipnorm, self.global_clipnorm, self.clipvalue = clipnorm, global_clipnorm, clipvalue
        self.iterations = 0
        self.slots: dict[str, object] = {}

    def init_slots(self, size: int, dtype) -> None:
        for name in self.slot_names:
            self.slots[name] = B.xp.zeros(size, dtype=dtype)

    def _clip(self, g, slices):
        xp = B.xp
        if self.clipvalue is not None:
            xp.clip(g, -self.clipvalue, self.clipvalue, out=g)
        if self.clipnorm is not None:  # Keras: per parameter
            for sl in slices:
                n = xp.sqrt((g[sl] * g[sl]).sum())
                g[sl] *= xp.minimum(1.0, self.clipnorm / xp.maximum(n, 1e-12)).astype(g.dtype)
        if self.global_clipnorm is not None:
            n = xp.sqrt((g * g).sum())
            g *= xp.minimum(1.0, self.global_clipnorm / xp.maximum(n, 1e-12)).astype(g.dtype)

    def step(self, w, g, slices=(), lr: float | None = None) -> None:
        """Update flat parameters ``w`` in place from flat gradients ``g`` (g may be clipped in place)."""
        if self.clipnorm is not None or self.global_clipnorm is not None or self.clipvalue is not None:
            self._clip(g, slices)
        self.iterations += 1
        self._update(w, g, self.learning_rate if lr is None else lr)

    def _update(self, w, g, lr):
        raise NotImplementedError

    def state(self) -> dict:
        return {"iterations": self.iterations, "slots": self.slots}


class SGD(Optimizer):
    slot_names = ("momentum",)

    def __init__(self, learning_rate: PositiveFloat = 0.01, momentum: Fraction = 0.0, nesterov: bool = False, **kw):
        super().__init__(learning_rate, **kw)
        self.momentum, self.nesterov = float(momentum), bool(nesterov)
        if not self.momentum:
            self.slot_names = ()

    def _update(self, w, g, lr):
        if not self.momentum:
            w -= lr * g
            return
        v = self.slots["momentum"]
        v *= self.momentum
        v -= lr * g
        if self.nesterov:
            w += self.momentum * v - lr * g
        else:
            w += v


class Perceptron(SGD):
    def __init__(self, learning_rate: PositiveFloat = 1.0, **kw):
        super().__init__(learning_rate, **kw)


class RMSprop(Optimizer):
    slot_names = ("velocity", "average_gradient", "momentum")

    def __init__(self, learning_rate: PositiveFloat = 0.001, rho: Beta = 0.9, momentum: Fraction = 0.0,
                 epsilon: PositiveFloat = 1e-7, centered: bool = False, **kw):
        super().__init__(learning_rate, **kw)
        self.rho, self.momentum, self.epsilon, self.centered = float(rho), float(momentum), float(epsilon), centered
        self.slot_names = ("velocity",) + (("average_gradient",) if centered else ()) + (
            ("momentum",) if self.momentum else ())

    def _update(self, w, g, lr):
        xp = B.xp
        s = self.slots["velocity"]
        s *= self.rho
        s += (1 - self.rho) * g * g
        denom = s
        if self.centered:
            a = self.slots["average_gradient"]
            a *= self.rho
            a += (1 - self.rho) * g
            denom = s - a * a
        step = lr * g / (xp.sqrt(denom) + self.epsilon)
        if self.momentum:
            m = self.slots["momentum"]
            m *= self.momentum
            m += step
            step = m
        w -= step


class Adam(Optimizer):
    slot_names = ("m", "v")

    def __init__(self, learning_rate: PositiveFloat = 0.001, beta_1: Beta = 0.9, beta_2: Beta = 0.999,
                 epsilon: PositiveFloat = 1e-7, amsgrad: bool = False, weight_decay: NonNegativeFloat | None = None,
                 **kw):
        super().__init__(learning_rate, **kw)
        self.beta_1, self.beta_2, self.epsilon, self.amsgrad = float(beta_1), float(beta_2), float(epsilon), amsgrad
        self.weight_decay = weight_decay  # decoupled, as Keras 3: w -= lr wd w before the Adam step
        if amsgrad:
            self.slot_names = ("m", "v", "vhat")
        self._tmp = None

    def _update(self, w, g, lr):
        xp = B.xp
        t = self.iterations
        m, v = self.slots["m"], self.slots["v"]
        lr_t = w.dtype.type(lr * math.sqrt(1 - self.beta_2**t) / (1 - self.beta_1**t))
        m += (1 - self.beta_1) * (g - m)
        tmp = self._tmp if self._tmp is not None and self._tmp.shape == g.shape else xp.empty_like(g)
        self._tmp = tmp
        xp.multiply(g, g, out=tmp)
        tmp -= v
        tmp *= 1 - self.beta_2
        v += tmp
        if self.amsgrad:
            vhat = self.slots["vhat"]
            xp.maximum(vhat, v, out=vhat)
            v = vhat
        xp.sqrt(v, out=tmp)
        tmp += self.epsilon
        xp.divide(m, tmp, out=tmp)
        tmp *= lr_t
        self._decay(w, lr)
        w -= tmp

    def _decay(self, w, lr):
        if self.weight_decay:
            w *= w.dtype.type(1 - lr * self.weight_decay)


class AdamW(Adam):
    def __init__(self, learning_rate: PositiveFloat = 0.001, weight_decay: NonNegativeFloat = 0.004, **kw):
        super().__init__(learning_rate, weight_decay=weight_decay, **kw)


class Adagrad(Optimizer):
    slot_names = ("accumulator",)

    def __init__(self, learning_rate: PositiveFloat = 0.001, initial_accumulator_value: NonNegativeFloat = 0.1,
                 epsilon: PositiveFloat = 1e-7, **kw):
        super().__init__(learning_rate, **kw)
        self.initial_accumulator_value, self.epsilon = float(initial_accumulator_value), float(epsilon)

    def init_slots(self, size, dtype):
        self.slots["accumulator"] = B.xp.full(size, self.initial_accumulator_value, dtype=dtype)

    def _update(self, w, g, lr):
        s = self.slots["accumulator"]
        s += g * g
        w -= lr * g / (B.xp.sqrt(s) + self.epsilon)


OPTIMIZERS: Registry[type[Optimizer]] = Registry("optimizer")
for _name, _cls in (("sgd", SGD), ("rmsprop", RMSprop), ("adam", Adam), ("adamw", AdamW), ("adagrad", Adagrad),
                    ("perceptron", Perceptron)):
    OPTIMIZERS.add(_name, _cls)
NAMES = OPTIMIZERS.names()


def get(name: str, **kwargs) -> Optimizer:
    return OPTIMIZERS.get(name)(**kwargs)
