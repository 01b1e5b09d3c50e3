"""Losses (Keras names): a value averaged over the batch and its gradient w.r.t. the prediction.

Reductions follow Keras: cross-entropies sum over the class (last) axis, regression losses average
over it, then the result is averaged over every other axis (batch, and time for sequence outputs).
Cross-entropy after softmax or sigmoid is *fused*: computed from the logits z with log-softmax or
log(1 + exp(-|z|)), so saturated outputs never give NaN, and the gradient is simply p - y.
The perceptron criterion mean(max(0, -(2y - 1) z)) is fused with the step activation: stochastic
gradient descent on it with learning rate 1 is Rosenblatt's rule w += (y - step(z)) x.
"""

from __future__ import annotations

from nnctl import backend as B
from nnctl.ops.activations import sigmoid, softmax

EPS = 1e-7


class Loss:
    """Base: ``value(p, y)`` -> scalar, ``grad(p, y)`` -> dL/dp; fused variants on logits."""

    fused: frozenset = frozenset()  # output activations this loss can fuse with
    target = "dense"  # dense (same shape as output), sparse (integer class ids), or binary

    def value(self, p, y):
        raise NotImplementedError

    def grad(self, p, y):
        raise NotImplementedError

    def fused_value_grad(self, z, y, activation):
        raise NotImplementedError

    @staticmethod
    def _count(p, per_class_axis: bool = True):
        """Number of averaged terms: every axis but the last for reductions over the class axis."""
        return p.size // p.shape[-1] if per_class_axis else p.size


class MeanSquaredError(Loss):
    def value(self, p, y):
        d = p - y
        return (d * d).sum() / d.size

    def grad(self, p, y):
        return (p - y) * p.dtype.type(2.0 / p.size)


class MeanAbsoluteError(Loss):
    def value(self, p, y):
        return B.xp.abs(p - y).sum() / p.size

    def grad(self, p, y):
        return B.xp.sign(p - y) * p.dtype.type(1.0 / p.size)


class Huber(Loss):
    def __init__(self, delta: float = 1.0):
        self.delta = delta

    def value(self, p, y):
        a = B.xp.abs(p - y)
        q = B.xp.minimum(a, self.delta)
        return (0.5 * q * q + self.delta * (a - q)).sum() / p.size

    def grad(self, p, y):
        return B.xp.clip(p - y, -self.delta, self.delta) * p.dtype.type(1.0 / p.size)


class BinaryCrossentropy(Loss):
    fused = frozenset({"sigmoid"})
    target = "binary"

    def value(self, p, y):
        xp = B.xp
        q = xp.clip(p, EPS, 1 - EPS)
        return -(y * xp.log(q) + (1 - y) * xp.log(1 - q)).sum() / p.size

    def grad(self, p, y):
        q = B.xp.clip(p, EPS, 1 - EPS)
        return (q - y) / (q * (1 - q)) * p.dtype.type(1.0 / p.size)

    def fused_value_grad(self, z, y, activation):
        xp = B.xp
        loss = (xp.maximum(z, 0) - z * y + xp.log1p(xp.exp(-xp.abs(z)))).sum() / z.size
        return loss, (sigmoid(z) - y) * z.dtype.type(1.0 / z.size)


class CategoricalCrossentropy(Loss):
    fused = frozenset({"softmax"})

    def value(self, p, y):
        xp = B.xp
        return -(y * xp.log(xp.clip(p, EPS, 1.0))).sum() / self._count(p)

    def grad(self, p, y):
        return -y / B.xp.clip(p, EPS, 1.0) * p.dtype.type(1.0 / self._count(p))

    def fused_value_grad(self, z, y, activation):
        xp = B.xp
        shifted = z - z.max(axis=-1, keepdims=True)
        log_sum = xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))
        loss = -(y * (shifted - log_sum)).sum() / self._count(z)
        return loss, (softmax(z) - y) * z.dtype.type(1.0 / self._count(z))


class SparseCategoricalCrossentropy(Loss):
    """Categorical cross-entropy with integer class ids y of shape p.shape[:-1]."""

    fused = frozenset({"softmax"})
    target = "sparse"

    def _pick(self, a, y):
        xp = B.xp
        return xp.take_along_axis(a, y.astype(xp.int64)[..., None], axis=-1)[..., 0]

    def value(self, p, y):
        return -B.xp.log(B.xp.clip(self._pick(p, y), EPS, 1.0)).sum() / self._count(p)

    def grad(self, p, y):
        xp = B.xp
        g = xp.zeros_like(p)
        idx = y.astype(xp.int64)[..., None]
        xp.put_along_axis(g, idx, (-1.0 / xp.clip(self._pick(p, y), EPS, 1.0))[..., None], axis=-1)
        return g * p.dtype.type(1.0 / self._count(p))

    def fused_value_grad(self, z, y, activation):
        xp = B.xp
        shifted = z - z.max(axis=-1, keepdims=True)
        log_sum = xp.log(xp.exp(shifted).sum(axis=-1))
        loss = (log_sum - self._pick(shifted, y)).sum() / self._count(z)
        g = softmax(z)
        idx = y.astype(xp.int64)[..., None]
        xp.put_along_axis(g, idx, xp.take_along_axis(g, idx, axis=-1) - 1, axis=-1)
        return loss, g * z.dtype.type(1.0 / self._count(z))


class Hinge(Loss):
    """mean(max(1 - t p, 0)) with t = 2y - 1 for 0/1 labels (labels already in {-1, 1} are kept)."""

    target = "binary"

    @staticmethod
    def _t(y):
        return B.xp.where(y <= 0, -1.0, 1.0).astype(y.dtype)

    def value(self, p, y):
        return B.xp.maximum(1 - self._t(y) * p, 0).sum() / p.size

    def grad(self, p, y):
        t = self._t(y)
        return -t * (1 - t * p > 0) * p.dtype.type(1.0 / p.size)


class KLDivergence(Loss):
    """sum y log(y / p) over the last axis, y and p clipped to [1e-7, 1]."""

    def value(self, p, y):
        xp = B.xp
        yc, pc = xp.clip(y, EPS, 1), xp.clip(p, EPS, 1)
        return (yc * xp.log(yc / pc)).sum() / self._count(p)

    def grad(self, p, y):
        xp = B.xp
        return -xp.clip(y, EPS, 1) / xp.clip(p, EPS, 1) * (p > EPS) * p.dtype.type(1.0 / self._count(p))


class Perceptron(Loss):
    """Perceptron criterion mean(max(0, -(2y - 1) z)) on the logits of a step unit."""

    fused = frozenset({"step"})
    target = "binary"

    def value(self, p, y):
        return B.xp.abs(p - y).sum() / p.size  # reported as the error rate of the step outputs

    def grad(self, p, y):
        raise ValueError("the perceptron loss needs a final 'step' activation")

    def fused_value_grad(self, z, y, activation):
        wrong = (z >= 0).astype(z.dtype) - y  # step(z) - y: +-1 where misclassified, else 0
        return B.xp.abs(wrong).sum() / z.size, wrong * z.dtype.type(1.0 / z.size)


LOSSES = {
    "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError, "mae": MeanAbsoluteError,
    "huber": Huber,
    "binary_crossentropy": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "hinge": Hinge,
    "kl_divergence": KLDivergence, "kld": KLDivergence, "kullback_leibler_divergence": KLDivergence,
    "perceptron": Perceptron,
}
NAMES = sorted(LOSSES)
CLASSIFICATION = {"binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy", "hinge",
                  "perceptron", "kl_divergence", "kld", "kullback_leibler_divergence"}


def get(name: str, **kwargs) -> Loss:
    return LOSSES[str(name).lower()](**kwargs)
