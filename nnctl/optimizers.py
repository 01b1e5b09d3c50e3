"""Optimizers (Keras names and defaults) over the model's flat parameter and gradient buffers.

Each update is a few whole-buffer operations, whatever the number of layers; slots (momentum,
moments) are flat buffers of the same size, saved in checkpoints by name.
- sgd:     v = m v - lr g;  w += v  (nesterov: w += m v - lr g); m = 0: w -= lr g
- rmsprop: s = rho s + (1 - rho) g^2;  w -= lr g / (sqrt(s) + eps)  (centered: s - mean^2)
- adam:    m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  w -= lr_t m / (sqrt(v) + eps),
           lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)  (Keras's form of the bias correction)
- adamw:   adam with w -= lr wd w first (decoupled weight decay; adam takes ``weight_decay`` too, as Keras 3)
- adagrad: s += g^2;  w -= lr g / (sqrt(s) + eps)
- nadam:   adam with Nesterov momentum, Keras's schedule mu_t = b1 (1 - 0.5 * 0.96^t):
           w -= lr (mu_{t+1} m / (1 - prod_{i<=t+1} mu_i) + (1 - mu_t) g / (1 - prod_{i<=t} mu_i)) / (sqrt(v / (1 - b2^t)) + eps)
- adamax:  m = b1 m + (1-b1) g;  u = max(b2 u, |g|);  w -= lr m / ((1 - b1^t) (u + eps))
- adadelta: a = rho a + (1-rho) g^2;  d = sqrt(D + eps) / sqrt(a + eps) g;  D = rho D + (1-rho) d^2;  w -= lr d
- lion:    w -= lr sign(b1 m + (1-b1) g);  m = b2 m + (1-b2) g
- ftrl:    Keras's FTRL-proximal (McMahan et al. 2013): accumulator n, linear z; see ``Ftrl``
- perceptron: sgd with learning rate 1 (Rosenblatt's rule with the perceptron loss)

``use_ema`` (every optimizer, Keras's meaning) keeps e = m e + (1 - m) w after each step (e = w after the first),
as the slot ``ema``: the checkpoint's weights (evaluate, predict, init_from) and the per-epoch validation use e;
training and ``--resume`` continue from w.
"""

from __future__ import annotations

import contextlib
import math
from typing import Annotated, Any

from nnctl import backend as B
from nnctl.fields import Fraction, NonNegativeFloat, PositiveFloat, Range
from nnctl.registry import Registry

Beta = Annotated[float, Range(0, 1, hi_open=True)]


class Optimizer:
    slot_names: tuple[str, ...] = ()

    def __init__(
        self,
        learning_rate: PositiveFloat = 0.01,
        clipnorm: PositiveFloat | None = None,
        global_clipnorm: PositiveFloat | None = None,
        clipvalue: PositiveFloat | None = None,
        use_ema: bool = False,
        ema_momentum: Fraction = 0.99,
    ):
        self.learning_rate = float(learning_rate)
        self.clipnorm, self.global_clipnorm, self.clipvalue = clipnorm, global_clipnorm, clipvalue
        self.use_ema, self.ema_momentum = bool(use_ema), float(ema_momentum)
        self.iterations = 0
        self.slots: dict[str, Any] = {}

    def init_slots(self, size: int, dtype) -> None:
        for name in self.slot_names:
            self.slots[name] = B.xp.zeros(size, dtype=dtype)
        if self.use_ema:
            self.slots["ema"] = B.xp.zeros(size, dtype=dtype)

    def ema_weights(self, w):
        """The weights to evaluate and save: the moving average under ``use_ema`` (before any step, w)."""
        return self.slots["ema"] if self.use_ema and self.iterations > 0 and "ema" in self.slots else w

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
        if self.use_ema:  # Keras: momentum 0 on the first step, so the average starts at the weights
            m = w.dtype.type(self.ema_momentum if self.iterations > 1 else 0.0)
            e = self.slots["ema"]
            e *= m
            e += (1 - m) * w

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

    def __init__(
        self,
        learning_rate: PositiveFloat = 0.001,
        rho: Beta = 0.9,
        momentum: Fraction = 0.0,
        epsilon: PositiveFloat = 1e-7,
        centered: bool = False,
        **kw,
    ):
        super().__init__(learning_rate, **kw)
        self.rho, self.momentum, self.epsilon, self.centered = float(rho), float(momentum), float(epsilon), centered
        self.slot_names = (
            ("velocity",) + (("average_gradient",) if centered else ()) + (("momentum",) if self.momentum else ())
        )

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

    def __init__(
        self,
        learning_rate: PositiveFloat = 0.001,
        beta_1: Beta = 0.9,
        beta_2: Beta = 0.999,
        epsilon: PositiveFloat = 1e-7,
        amsgrad: bool = False,
        weight_decay: NonNegativeFloat | None = None,
        **kw,
    ):
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

    def __init__(
        self,
        learning_rate: PositiveFloat = 0.001,
        initial_accumulator_value: NonNegativeFloat = 0.1,
        epsilon: PositiveFloat = 1e-7,
        **kw,
    ):
        super().__init__(learning_rate, **kw)
        self.initial_accumulator_value, self.epsilon = float(initial_accumulator_value), float(epsilon)

    def init_slots(self, size, dtype):
        super().init_slots(size, dtype)
        self.slots["accumulator"] = B.xp.full(size, self.initial_accumulator_value, dtype=dtype)

    def _update(self, w, g, lr):
        s = self.slots["accumulator"]
        s += g * g
        w -= lr * g / (B.xp.sqrt(s) + self.epsilon)


class Nadam(Optimizer):
    slot_names = ("m", "v")

    def __init__(
        self,
        learning_rate: PositiveFloat = 0.001,
        beta_1: Beta = 0.9,
        beta_2: Beta = 0.999,
        epsilon: PositiveFloat = 1e-7,
        **kw,
    ):
        super().__init__(learning_rate, **kw)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)
        self._product = (0, 1.0)  # (t, prod_{i<=t} mu_i), recomputed from ``iterations`` after a resume

    def _mu(self, t: int) -> float:
        return self.beta_1 * (1.0 - 0.5 * 0.96**t)

    def _u_product(self, t: int) -> float:
        done, prod = self._product
        if done > t:
            done, prod = 0, 1.0
        for i in range(done + 1, t + 1):
            prod *= self._mu(i)
        self._product = (t, prod)
        return prod

    def _update(self, w, g, lr):
        xp = B.xp
        t = self.iterations
        mu_t, mu_next = self._mu(t), self._mu(t + 1)
        prod_t = self._u_product(t)
        prod_next = prod_t * mu_next
        m, v = self.slots["m"], self.slots["v"]
        m += (1 - self.beta_1) * (g - m)
        v += (1 - self.beta_2) * (g * g - v)
        denom = xp.sqrt(v / w.dtype.type(1 - self.beta_2**t)) + w.dtype.type(self.epsilon)
        m_hat = w.dtype.type(mu_next / (1 - prod_next)) * m + w.dtype.type((1 - mu_t) / (1 - prod_t)) * g
        w -= w.dtype.type(lr) * m_hat / denom


class Adamax(Optimizer):
    slot_names = ("m", "u")

    def __init__(
        self,
        learning_rate: PositiveFloat = 0.001,
        beta_1: Beta = 0.9,
        beta_2: Beta = 0.999,
        epsilon: PositiveFloat = 1e-7,
        **kw,
    ):
        super().__init__(learning_rate, **kw)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)

    def _update(self, w, g, lr):
        xp = B.xp
        m, u = self.slots["m"], self.slots["u"]
        m += (1 - self.beta_1) * (g - m)
        u *= self.beta_2
        xp.maximum(u, xp.abs(g), out=u)
        w -= w.dtype.type(lr / (1 - self.beta_1**self.iterations)) * m / (u + self.epsilon)


class Adadelta(Optimizer):
    slot_names = ("accumulated_grad", "accumulated_delta_var")

    def __init__(self, learning_rate: PositiveFloat = 0.001, rho: Beta = 0.95, epsilon: PositiveFloat = 1e-7, **kw):
        super().__init__(learning_rate, **kw)
        self.rho, self.epsilon = float(rho), float(epsilon)

    def _update(self, w, g, lr):
        xp = B.xp
        a, d = self.slots["accumulated_grad"], self.slots["accumulated_delta_var"]
        a += (1 - self.rho) * (g * g - a)
        delta = xp.sqrt(d + self.epsilon) / xp.sqrt(a + self.epsilon) * g
        d += (1 - self.rho) * (delta * delta - d)
        w -= w.dtype.type(lr) * delta


class Lion(Optimizer):
    slot_names = ("m",)

    def __init__(
        self,
        learning_rate: PositiveFloat = 0.001,
        beta_1: Beta = 0.9,
        beta_2: Beta = 0.99,
        weight_decay: NonNegativeFloat | None = None,
        **kw,
    ):
        super().__init__(learning_rate, **kw)
        self.beta_1, self.beta_2, self.weight_decay = float(beta_1), float(beta_2), weight_decay

    def _update(self, w, g, lr):
        m = self.slots["m"]
        if self.weight_decay:  # decoupled, as Keras 3 applies it before every optimizer's step
            w *= w.dtype.type(1 - lr * self.weight_decay)
        w -= w.dtype.type(lr) * B.xp.sign(self.beta_1 * m + (1 - self.beta_1) * g)
        m += (1 - self.beta_2) * (g - m)


class Ftrl(Optimizer):
    """FTRL-proximal as Keras writes it: n' = n + g^2; z += g + 2 l2s w - (n'^-p - n^-p) / lr w;
    w = (clip(z, -l1, l1) - z) / (n'^-p / lr + 2 (l2 + beta / (2 lr))); p = learning_rate_power."""

    slot_names = ("accumulator", "linear")

    def __init__(
        self,
        learning_rate: PositiveFloat = 0.001,
        learning_rate_power: Annotated[float, Range(None, 0)] = -0.5,
        initial_accumulator_value: NonNegativeFloat = 0.1,
        l1_regularization_strength: NonNegativeFloat = 0.0,
        l2_regularization_strength: NonNegativeFloat = 0.0,
        l2_shrinkage_regularization_strength: NonNegativeFloat = 0.0,
        beta: NonNegativeFloat = 0.0,
        **kw,
    ):
        super().__init__(learning_rate, **kw)
        self.learning_rate_power = float(learning_rate_power)
        self.initial_accumulator_value = float(initial_accumulator_value)
        self.l1, self.l2 = float(l1_regularization_strength), float(l2_regularization_strength)
        self.l2_shrinkage, self.beta = float(l2_shrinkage_regularization_strength), float(beta)

    def init_slots(self, size, dtype):
        super().init_slots(size, dtype)
        self.slots["accumulator"] = B.xp.full(size, self.initial_accumulator_value, dtype=dtype)

    def _update(self, w, g, lr):
        xp = B.xp
        p = -self.learning_rate_power
        n, z = self.slots["accumulator"], self.slots["linear"]
        new_n = n + g * g
        z += g + 2 * self.l2_shrinkage * w - (new_n**p - n**p) / lr * w
        quadratic = new_n**p / lr + 2 * (self.l2 + self.beta / (2.0 * lr))
        w[...] = (xp.clip(z, -self.l1, self.l1) - z) / quadratic
        n[...] = new_n


OPTIMIZERS: Registry[type[Optimizer]] = Registry("optimizer")
for _name, _cls in (
    ("sgd", SGD),
    ("rmsprop", RMSprop),
    ("adam", Adam),
    ("adamw", AdamW),
    ("adagrad", Adagrad),
    ("nadam", Nadam),
    ("adamax", Adamax),
    ("adadelta", Adadelta),
    ("lion", Lion),
    ("ftrl", Ftrl),
    ("perceptron", Perceptron),
):
    OPTIMIZERS.add(_name, _cls)
NAMES = OPTIMIZERS.names()


def get(name: str, **kwargs) -> Optimizer:
    return OPTIMIZERS.get(name)(**kwargs)


@contextlib.contextmanager
def ema_swapped(optimizer: Optimizer, w):
    """Within the block the flat weights ``w`` hold the optimizer's moving average (``use_ema``), then their own."""
    average = optimizer.ema_weights(w)
    if average is w:
        yield
        return
    kept = w.copy()
    w[...] = average
    try:
        yield
    finally:
        w[...] = kept
