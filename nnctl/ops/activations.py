"""Activation functions as (forward, backward) pairs: y = f(x) elementwise; dx = f'(x) * dy.

``backward(x, y, dy)`` gets both the input and the output so each derivative uses whichever is
cheaper (sigmoid from y, gelu from x). Softmax runs over the last axis.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from nnctl import backend as B
from nnctl.fields import NameOf
from nnctl.ops import activation_fns as F
from nnctl.registry import Registry

_SQRT_2_OVER_PI = 0.7978845608028654


@dataclass(frozen=True)
class Activation:
    forward: Callable
    backward: Callable
    doc: str


def _sigmoid(x):
    xp = B.xp
    # exp of -|x| never overflows; both branches reuse it
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _softmax(x):
    xp = B.xp
    z = x - x.max(axis=-1, keepdims=True)
    e = xp.exp(z)
    e /= e.sum(axis=-1, keepdims=True)
    return e


def _softmax_backward(x, y, dy):
    return y * (dy - (dy * y).sum(axis=-1, keepdims=True))


def _relu(x):
    return B.xp.maximum(x, 0)


def _gelu(x):
    xp = B.xp
    return 0.5 * x * (1 + xp.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x**3)))


def _gelu_backward(x, y, dy):
    xp = B.xp
    t = xp.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x**3))
    dt = (1 - t * t) * _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x)
    return dy * (0.5 * (1 + t) + 0.5 * x * dt)


def _swish_backward(x, y, dy):
    s = _sigmoid(x)
    return dy * (s + x * s * (1 - s))


def leaky_relu(alpha: float = 0.2) -> Activation:
    return Activation(
        lambda x: B.xp.where(x > 0, x, alpha * x),
        lambda x, y, dy: B.xp.where(x > 0, dy, alpha * dy),
        f"x if x > 0 else {alpha}*x",
    )


def elu(alpha: float = 1.0) -> Activation:
    return Activation(
        lambda x: B.xp.where(x > 0, x, alpha * B.xp.expm1(B.xp.minimum(x, 0))),
        lambda x, y, dy: B.xp.where(x > 0, dy, dy * (y + alpha)),
        f"x if x > 0 else {alpha}*(exp(x)-1)",
    )


ACTIVATIONS: dict[str, Activation] = {
    "linear": Activation(lambda x: x, lambda x, y, dy: dy, "x"),
    "step": Activation(
        lambda x: (x >= 0).astype(x.dtype),
        lambda x, y, dy: B.xp.zeros_like(dy),
        "1 if x >= 0 else 0 (Heaviside); its gradient is zero, so train it with the perceptron optimizer",
    ),
    "sigmoid": Activation(_sigmoid, lambda x, y, dy: dy * y * (1 - y), "1 / (1 + exp(-x))"),
    "tanh": Activation(lambda x: B.xp.tanh(x), lambda x, y, dy: dy * (1 - y * y), "tanh(x)"),
    "arctan": Activation(lambda x: B.xp.arctan(x), lambda x, y, dy: dy / (1 + x * x), "arctan(x)"),
    "relu": Activation(_relu, lambda x, y, dy: dy * (x > 0), "max(x, 0)"),
    "gelu": Activation(F.gelu, F.gelu_backward, "x * Phi(x), Phi the normal CDF (exact, erf form; Keras's default)"),
    "swish": Activation(lambda x: x * _sigmoid(x), _swish_backward, "x * sigmoid(x)"),
    "softmax": Activation(_softmax, _softmax_backward, "exp(x_i) / sum_j exp(x_j), over the last axis"),
    "softplus": Activation(lambda x: B.xp.logaddexp(x, 0), lambda x, y, dy: dy * _sigmoid(x), "log(1 + exp(x))"),
    "gelu_tanh": Activation(
        _gelu,
        _gelu_backward,
        "0.5 x (1 + tanh(sqrt(2/pi)(x + 0.044715 x^3))) (Keras's gelu(approximate=True), PyTorch's approximate='tanh')",
    ),
    "silu": Activation(lambda x: x * _sigmoid(x), _swish_backward, "x * sigmoid(x) (= swish)"),
    "selu": Activation(
        F.selu, F.selu_backward, "scale * (x if x > 0 else alpha*(exp(x)-1)), alpha 1.67326, scale 1.05070"
    ),
    "relu6": Activation(F.relu6, F.relu6_backward, "min(max(x, 0), 6)"),
    "hard_sigmoid": Activation(F.hard_sigmoid, F.hard_sigmoid_backward, "relu6(x + 3) / 6 (Keras 3)"),
    "hard_silu": Activation(F.hard_silu, F.hard_silu_backward, "x * hard_sigmoid(x)"),
    "hard_swish": Activation(F.hard_silu, F.hard_silu_backward, "x * hard_sigmoid(x) (= hard_silu)"),
    "mish": Activation(F.mish, F.mish_backward, "x * tanh(softplus(x))"),
    "softsign": Activation(F.softsign, F.softsign_backward, "x / (1 + |x|)"),
    "exponential": Activation(lambda x: B.xp.exp(x), lambda x, y, dy: dy * y, "exp(x)"),
    "log_softmax": Activation(F.log_softmax, F.log_softmax_backward, "x_i - log sum_j exp(x_j), over the last axis"),
}
PARAMETRIC = {"leaky_relu": leaky_relu, "elu": elu}

ACTIVATION_NAMES: Registry = Registry("activation")
for _name, _entry in (*ACTIVATIONS.items(), *PARAMETRIC.items()):
    ACTIVATION_NAMES.add(_name, _entry)
NAMES = ACTIVATION_NAMES.names()
#: annotation of a layer key that names an activation
ActivationName = Annotated[str, NameOf("activation", tables=False)]


def get(name: str, **kwargs) -> Activation:
    """The activation named ``name`` (case- and underscore-insensitive); ``alpha`` for leaky_relu and elu."""
    entry = ACTIVATION_NAMES.get(name)
    return entry(**kwargs) if not isinstance(entry, Activation) else entry


def canonical(name: str) -> str:
    return ACTIVATION_NAMES.canonical(name)


sigmoid = _sigmoid
softmax = _softmax
