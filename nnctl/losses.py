"""Losses (Keras names): a value averaged over the batch and its gradient w.r.t. the prediction.

Each loss writes its unreduced ``terms`` (and their derivative); the base class reduces them once, as
Keras does: cross-entropy-like losses sum over the class (last) axis, regression losses average over it,
then the result is averaged over every other axis (batch, and time for sequence outputs). Per-sample
weights w (class weights) scale each sample's terms, and the mean stays over the N samples (Keras's
``sum_over_batch_size``): L = sum_i w_i l_i / N.
Cross-entropy after softmax or sigmoid is *fused*: computed from the logits z with log-softmax or
log(1 + exp(-|z|)), so saturated outputs never give NaN, and the gradient is simply p - y.
The perceptron criterion mean(max(0, -(2y - 1) z)) is fused with the step activation: stochastic
gradient descent on it with learning rate 1 is Rosenblatt's rule w += (y - step(z)) x.
"""

from __future__ import annotations

import math
import sys
from typing import Annotated

import numpy as np

from nnctl import backend as B
from nnctl.fields import Fraction, NonNegativeFloat, PositiveFloat, Range
from nnctl.layers import layer_class
from nnctl.ops.activations import sigmoid, softmax
from nnctl.registry import Registry

EPS = 1e-7
Smoothing = Annotated[float, Range(0, 1)]


class Loss:
    """Base: ``terms(p, y)`` unreduced, ``terms_grad(p, y)`` d terms / dp; the reduction is done here once."""

    fused: frozenset = frozenset()  # output activations this loss can fuse with
    target = "dense"  # dense (same shape as output), sparse (integer class ids), or binary
    task = "regression"  # how targets are encoded: regression, binary, categorical or sparse
    from_logits = False  # the model outputs logits; the loss applies ``logit_activation`` itself
    logit_activation: str | None = None
    per_class_axis = False  # True: terms are summed over the last axis (cross-entropies), else averaged

    def probabilities(self, out):
        """The model's outputs as the metrics and ``--proba`` read them (logits through the activation)."""
        if not self.from_logits:
            return out
        out = B.asarray(out)
        return sigmoid(out) if self.logit_activation == "sigmoid" else softmax(out)

    # -- what each loss writes ----------------------------------------------------------------------
    def terms(self, p, y):
        """Unreduced loss: shape p.shape, or p.shape[:-1] for losses already summed over the class axis."""
        raise NotImplementedError

    def terms_grad(self, p, y):
        """d sum(terms) / dp, shape p.shape."""
        raise NotImplementedError

    def fused_terms_grad(self, z, y, activation):
        """(terms, d sum(terms) / dz) on the logits z of ``activation``."""
        raise NotImplementedError

    # -- the reduction, once ------------------------------------------------------------------------
    def _count(self, p) -> int:
        """Number of averaged terms: every axis but the last for reductions over the class axis."""
        return p.size // p.shape[-1] if self.per_class_axis else p.size

    def _reduce(self, t, p, w):
        if w is None:
            return t.sum() / self._count(p)
        per_sample = t.reshape(t.shape[0], -1).sum(axis=1)
        return (per_sample * w.astype(per_sample.dtype)).sum() / self._count(p)

    def _scale(self, g, p, w):
        scale = p.dtype.type(1.0 / self._count(p))
        if w is None:
            return g * scale
        return g * (w.astype(p.dtype) * scale).reshape((-1,) + (1,) * (g.ndim - 1))

    def value(self, p, y, w=None):
        """Scalar loss of a batch; ``w`` (N,) per-sample weights or None."""
        return self._reduce(self.terms(p, y), p, w)

    def grad(self, p, y, w=None):
        return self._scale(self.terms_grad(p, y), p, w)

    def value_grad(self, p, y, w=None):
        """(value, dL/dp) of one batch, as the training step needs both."""
        return self.value(p, y, w), self.grad(p, y, w)

    def fused_value_grad(self, z, y, activation, w=None):
        t, g = self.fused_terms_grad(z, y, activation)
        return self._reduce(t, z, w), self._scale(g, z, w)


class MeanSquaredError(Loss):
    def terms(self, p, y):
        d = p - y
        return d * d

    def terms_grad(self, p, y):
        return (p - y) * p.dtype.type(2.0)


class MeanAbsoluteError(Loss):
    def terms(self, p, y):
        return B.xp.abs(p - y)

    def terms_grad(self, p, y):
        return B.xp.sign(p - y)


class Huber(Loss):
    def __init__(self, delta: PositiveFloat = 1.0):
        self.delta = delta

    def terms(self, p, y):
        a = B.xp.abs(p - y)
        q = B.xp.minimum(a, self.delta)
        return 0.5 * q * q + self.delta * (a - q)

    def terms_grad(self, p, y):
        return B.xp.clip(p - y, -self.delta, self.delta)


class MeanAbsolutePercentageError(Loss):
    """100 |y - p| / max(|y|, 1e-7), averaged."""

    def terms(self, p, y):
        return 100.0 * B.xp.abs(y - p) / B.xp.maximum(B.xp.abs(y), EPS)

    def terms_grad(self, p, y):
        return 100.0 * B.xp.sign(p - y) / B.xp.maximum(B.xp.abs(y), EPS)


class MeanSquaredLogarithmicError(Loss):
    """(log(max(p, 1e-7) + 1) - log(max(y, 1e-7) + 1))^2, averaged."""

    def terms(self, p, y):
        xp = B.xp
        d = xp.log1p(xp.maximum(p, EPS)) - xp.log1p(xp.maximum(y, EPS))
        return d * d

    def terms_grad(self, p, y):
        xp = B.xp
        d = xp.log1p(xp.maximum(p, EPS)) - xp.log1p(xp.maximum(y, EPS))
        return 2 * d / (1 + xp.maximum(p, EPS)) * (p > EPS)


class Poisson(Loss):
    """p - y log(p + 1e-7), averaged."""

    def terms(self, p, y):
        return p - y * B.xp.log(p + EPS)

    def terms_grad(self, p, y):
        return 1 - y / (p + EPS)


class LogCosh(Loss):
    """log(cosh(p - y)) = x + softplus(-2x) - log 2, averaged (stable for large |x|)."""

    def terms(self, p, y):
        xp = B.xp
        x = p - y
        return x + xp.logaddexp(0, -2 * x) - math.log(2.0)

    def terms_grad(self, p, y):
        return B.xp.tanh(p - y)


class CosineSimilarity(Loss):
    """-sum(y/|y| * p/|p|) over the last axis (|a| = sqrt(max(sum a^2, 1e-12)), Keras's l2_normalize)."""

    per_class_axis = True

    @staticmethod
    def _norm(a):
        return B.xp.sqrt(B.xp.maximum((a * a).sum(axis=-1, keepdims=True), 1e-12))

    def terms(self, p, y):
        return -((y / self._norm(y)) * (p / self._norm(p))).sum(axis=-1)

    def terms_grad(self, p, y):
        n = self._norm(p)
        u, v = p / n, y / self._norm(y)
        clipped = (p * p).sum(axis=-1, keepdims=True) < 1e-12  # the norm is a constant there
        return -(v - u * (u * v).sum(axis=-1, keepdims=True) * ~clipped) / n


class _FromLogits(Loss):
    """A cross-entropy that can take logits (``from_logits = true``, Keras's meaning): a linear last layer."""

    def __init__(self, from_logits: bool = False, label_smoothing: Smoothing = 0.0):
        self.from_logits = bool(from_logits)
        self.label_smoothing = float(label_smoothing)

    def smooth(self, y):
        """Keras's label smoothing: y (1 - s) + s / K (binary: K = 2)."""
        if not self.label_smoothing:
            return y
        k = 2 if self.logit_activation == "sigmoid" else y.shape[-1]
        return y * (1 - self.label_smoothing) + self.label_smoothing / k

    # with from_logits, p are logits: the fused formulas (log-softmax, log1p(exp(-|z|))) apply to them
    def value(self, p, y, w=None):
        return self.fused_value_grad(p, y, self.logit_activation, w)[0] if self.from_logits else super().value(p, y, w)

    def grad(self, p, y, w=None):
        return self.fused_value_grad(p, y, self.logit_activation, w)[1] if self.from_logits else super().grad(p, y, w)

    def value_grad(self, p, y, w=None):
        if self.from_logits:  # one pass gives both
            return self.fused_value_grad(p, y, self.logit_activation, w)
        return super().value(p, y, w), super().grad(p, y, w)


class BinaryCrossentropy(_FromLogits):
    fused = frozenset({"sigmoid"})
    target = "binary"
    task = "binary"
    logit_activation = "sigmoid"

    def terms(self, p, y):
        xp = B.xp
        y = self.smooth(y)
        q = xp.clip(p, EPS, 1 - EPS)
        return -(y * xp.log(q) + (1 - y) * xp.log(1 - q))

    def terms_grad(self, p, y):
        y = self.smooth(y)
        q = B.xp.clip(p, EPS, 1 - EPS)
        return (q - y) / (q * (1 - q))

    def fused_terms_grad(self, z, y, activation):
        xp = B.xp
        y = self.smooth(y)
        return xp.maximum(z, 0) - z * y + xp.log1p(xp.exp(-xp.abs(z))), sigmoid(z) - y


class CategoricalCrossentropy(_FromLogits):
    fused = frozenset({"softmax"})
    task = "categorical"
    logit_activation = "softmax"
    per_class_axis = True

    def terms(self, p, y):
        xp = B.xp
        return -(self.smooth(y) * xp.log(xp.clip(p, EPS, 1.0)))

    def terms_grad(self, p, y):
        return -self.smooth(y) / B.xp.clip(p, EPS, 1.0)

    def fused_terms_grad(self, z, y, activation):
        xp = B.xp
        y = self.smooth(y)
        shifted = z - z.max(axis=-1, keepdims=True)
        log_sum = xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))
        # softmax - y holds for targets that sum to 1 (one-hot, smoothed); in general it is s * sum(y) - y
        return -(y * (shifted - log_sum)), softmax(z) * y.sum(axis=-1, keepdims=True) - y


class SparseCategoricalCrossentropy(_FromLogits):
    """Categorical cross-entropy with integer class ids y of shape p.shape[:-1]."""

    fused = frozenset({"softmax"})
    target = "sparse"
    task = "sparse"
    logit_activation = "softmax"
    per_class_axis = True

    def __init__(self, from_logits: bool = False, ignore_class: int | None = None):  # no label_smoothing (Keras)
        super().__init__(from_logits)
        self.ignore_class = None if ignore_class is None else int(ignore_class)

    def _pick(self, a, y):
        xp = B.xp
        return xp.take_along_axis(a, y.astype(xp.int64)[..., None], axis=-1)[..., 0]

    def _ignoring(self, p, y):
        """(ids with ignored ones read as class 0, weight per term): the weight is 0 on ignored terms and
        (terms / kept terms) elsewhere, so the base class's mean over every term is the mean over the kept
        ones (Keras's ``ignore_class``); (y, None) without ``ignore_class``."""
        if self.ignore_class is None:
            return y, None
        xp = B.xp
        keep = y != self.ignore_class
        kept = xp.maximum(keep.sum(), 1)
        return xp.where(keep, y, 0), keep.astype(p.dtype) * p.dtype.type(self._count(p)) / kept.astype(p.dtype)

    def terms(self, p, y):
        y, k = self._ignoring(p, y)
        t = -B.xp.log(B.xp.clip(self._pick(p, y), EPS, 1.0))
        return t if k is None else t * k

    def terms_grad(self, p, y):
        xp = B.xp
        y, k = self._ignoring(p, y)
        g = xp.zeros_like(p)
        idx = y.astype(xp.int64)[..., None]
        xp.put_along_axis(g, idx, (-1.0 / xp.clip(self._pick(p, y), EPS, 1.0))[..., None], axis=-1)
        return g if k is None else g * k[..., None]

    def fused_terms_grad(self, z, y, activation):
        xp = B.xp
        y, k = self._ignoring(z, y)
        shifted = z - z.max(axis=-1, keepdims=True)
        log_sum = xp.log(xp.exp(shifted).sum(axis=-1))
        g = softmax(z)
        idx = y.astype(xp.int64)[..., None]
        xp.put_along_axis(g, idx, xp.take_along_axis(g, idx, axis=-1) - 1, axis=-1)
        t = log_sum - self._pick(shifted, y)
        return (t, g) if k is None else (t * k, g * k[..., None])


class BinaryFocalCrossentropy(BinaryCrossentropy):
    """(1 - p_t)^gamma bce, p_t = y p + (1 - y)(1 - p); with ``apply_class_balancing`` times
    alpha y + (1 - alpha)(1 - y) (Lin et al. 2017, Keras's form); averaged."""

    def __init__(
        self,
        apply_class_balancing: bool = False,
        alpha: Fraction = 0.25,
        gamma: NonNegativeFloat = 2.0,
        from_logits: bool = False,
        label_smoothing: Smoothing = 0.0,
    ):
        super().__init__(from_logits, label_smoothing)
        self.apply_class_balancing, self.alpha, self.gamma = bool(apply_class_balancing), float(alpha), float(gamma)

    def _focal(self, p, y, bce):
        """(terms, balance, focal factor, d factor / dp) from the probabilities p, the smoothed y and bce."""
        xp = B.xp
        one_minus = xp.maximum(1 - (y * p + (1 - y) * (1 - p)), 0)
        factor = one_minus**self.gamma
        dfactor = -self.gamma * xp.maximum(one_minus, 1e-30) ** (self.gamma - 1) * (2 * y - 1) if self.gamma else 0.0
        balance = y * self.alpha + (1 - y) * (1 - self.alpha) if self.apply_class_balancing else 1.0
        return balance * factor * bce, balance, factor, dfactor

    def terms(self, p, y):
        y = self.smooth(y)
        return self._focal(p, y, _bce(p, y))[0]

    def terms_grad(self, p, y):
        y = self.smooth(y)
        q = B.xp.clip(p, EPS, 1 - EPS)
        bce = _bce(p, y)
        _, balance, factor, dfactor = self._focal(p, y, bce)
        return balance * (dfactor * bce + factor * (q - y) / (q * (1 - q)))

    def fused_terms_grad(self, z, y, activation):
        xp = B.xp
        y = self.smooth(y)
        p = sigmoid(z)
        bce = xp.maximum(z, 0) - z * y + xp.log1p(xp.exp(-xp.abs(z)))
        t, balance, factor, dfactor = self._focal(p, y, bce)
        return t, balance * (dfactor * p * (1 - p) * bce + factor * (p - y))


def _bce(p, y):
    q = B.xp.clip(p, EPS, 1 - EPS)
    return -(y * B.xp.log(q) + (1 - y) * B.xp.log(1 - q))


class CategoricalFocalCrossentropy(CategoricalCrossentropy):
    """-sum alpha (1 - q)^gamma y log q over the classes, q = p / sum(p) clipped to [1e-7, 1 - 1e-7] (Keras's form)."""

    def __init__(
        self,
        alpha: Fraction = 0.25,
        gamma: NonNegativeFloat = 2.0,
        from_logits: bool = False,
        label_smoothing: Smoothing = 0.0,
    ):
        super().__init__(from_logits, label_smoothing)
        self.alpha, self.gamma = float(alpha), float(gamma)

    def _parts(self, p, y):
        xp = B.xp
        s = p.sum(axis=-1, keepdims=True)
        raw = p / s
        q = xp.clip(raw, EPS, 1 - EPS)
        inside = (raw > EPS) & (raw < 1 - EPS)
        return s, q, inside, self.smooth(y)

    def terms(self, p, y):
        _, q, _, y = self._parts(p, y)
        return -self.alpha * (1 - q) ** self.gamma * y * B.xp.log(q)

    def _dq(self, q, y):
        """d terms / dq."""
        xp = B.xp
        d = -self.alpha * (1 - q) ** self.gamma * y / q
        if self.gamma:
            d = d + self.alpha * self.gamma * (1 - q) ** (self.gamma - 1) * y * xp.log(q)
        return d

    def terms_grad(self, p, y):
        s, q, inside, y = self._parts(p, y)
        gq = self._dq(q, y) * inside
        # through q = p / s: dq_k/dp_j = (delta_kj - q_k) / s
        return (gq - (gq * (p / s)).sum(axis=-1, keepdims=True)) / s

    def fused_terms_grad(self, z, y, activation):
        p = softmax(z)
        t = self.terms(p, y)
        gp = self.terms_grad(p, y)
        return t, p * (gp - (gp * p).sum(axis=-1, keepdims=True))  # softmax's Jacobian


class Hinge(Loss):
    """mean(max(1 - t p, 0)) with t = 2y - 1 for 0/1 labels (labels already in {-1, 1} are kept)."""

    target = "binary"
    task = "binary"

    @staticmethod
    def _t(y):
        return B.xp.where(y <= 0, -1.0, 1.0).astype(y.dtype)

    def terms(self, p, y):
        return B.xp.maximum(1 - self._t(y) * p, 0)

    def terms_grad(self, p, y):
        t = self._t(y)
        return -t * (1 - t * p > 0)


class SquaredHinge(Hinge):
    """mean(max(1 - t p, 0)^2), t as for hinge."""

    def terms(self, p, y):
        h = super().terms(p, y)
        return h * h

    def terms_grad(self, p, y):
        t = self._t(y)
        return -2 * t * B.xp.maximum(1 - t * p, 0)


class CategoricalHinge(Loss):
    """max(0, 1 + max_k (1 - y_k) p_k - sum_k y_k p_k) per sample, one-hot y."""

    task = "categorical"
    per_class_axis = True

    def terms(self, p, y):
        pos = (y * p).sum(axis=-1)
        neg = ((1 - y) * p).max(axis=-1)
        return B.xp.maximum(neg - pos + 1, 0)

    def terms_grad(self, p, y):
        xp = B.xp
        other = (1 - y) * p
        active = (other.max(axis=-1) - (y * p).sum(axis=-1) + 1 > 0)[..., None]
        arg = xp.zeros_like(p)
        xp.put_along_axis(arg, other.argmax(axis=-1)[..., None], 1.0, axis=-1)
        return ((1 - y) * arg - y) * active


class KLDivergence(Loss):
    """sum y log(y / p) over the last axis, y and p clipped to [1e-7, 1]."""

    task = "categorical"
    per_class_axis = True

    def terms(self, p, y):
        xp = B.xp
        yc, pc = xp.clip(y, EPS, 1), xp.clip(p, EPS, 1)
        return yc * xp.log(yc / pc)

    def terms_grad(self, p, y):
        xp = B.xp
        return -xp.clip(y, EPS, 1) / xp.clip(p, EPS, 1) * (p > EPS)


class Perceptron(Loss):
    """Perceptron criterion mean(max(0, -(2y - 1) z)) on the logits of a step unit."""

    fused = frozenset({"step"})
    target = "binary"
    task = "binary"

    def terms(self, p, y):
        return B.xp.abs(p - y)  # reported as the error rate of the step outputs

    def terms_grad(self, p, y):
        raise ValueError("the perceptron loss needs a final 'step' activation")

    def fused_terms_grad(self, z, y, activation):
        wrong = (z >= 0).astype(z.dtype) - y  # step(z) - y: +-1 where misclassified, else 0
        return B.xp.abs(wrong), wrong


# -- segmentation: per-pixel losses over the spatial axes (issue 18) -------------------------------------
class Dice(Loss):
    """Soft Dice loss of integer masks: 1 - mean over classes of each sample's Dice coefficient.

    p (N, ..., C) class probabilities (softmax), y (N, ...) class ids; Y the one-hot of y, m = 1 where
    y != ignore_class. Per sample n and class c, over the spatial axes s:
        I = sum_s m p Y,  S = sum_s m (p + Y),  D_nc = (2 I + e) / (S + e)   (e = ``smooth``)
        l_n = 1 - (1/C) sum_c D_nc,  L = sum_n w_n l_n / N
    A class absent from both the mask and the prediction scores D = 1. dD/dp = m (2 Y (S + e) - (2 I + e)) / (S + e)^2.
    """

    target = "sparse"
    task = "sparse"

    def __init__(self, smooth: PositiveFloat = 1.0, ignore_class: int | None = None):
        self.smooth = float(smooth)
        self.ignore_class = None if ignore_class is None else int(ignore_class)

    def _count(self, p) -> int:
        return p.shape[0]  # one term per sample

    def _parts(self, p, y):
        """(one-hot Y, keep mask m (N, ..., 1), I, S) with I and S of shape (N, C)."""
        xp = B.xp
        ids = y.astype(xp.int64)
        keep = (
            xp.ones(ids.shape, dtype=p.dtype)
            if self.ignore_class is None
            else (ids != self.ignore_class).astype(p.dtype)
        )
        ids = xp.where(keep > 0, ids, 0)
        onehot = (ids[..., None] == xp.arange(p.shape[-1])).astype(p.dtype)
        m = keep[..., None]
        axes = tuple(range(1, p.ndim - 1))
        inter, total = m * p * onehot, m * (p + onehot)
        if axes:
            inter, total = inter.sum(axis=axes), total.sum(axis=axes)
        return onehot, m, inter, total

    def terms(self, p, y):
        _, _, inter, total = self._parts(p, y)
        e = self.smooth
        return 1 - ((2 * inter + e) / (total + e)).mean(axis=-1)

    def terms_grad(self, p, y):
        onehot, m, inter, total = self._parts(p, y)
        e = self.smooth
        shape = (p.shape[0],) + (1,) * (p.ndim - 2) + (p.shape[-1],)
        den = (total + e).reshape(shape)
        num = (2 * inter + e).reshape(shape)
        return -m * (2 * onehot * den - num) / (den * den) / p.shape[-1]


LOSSES: Registry[type[Loss]] = Registry("loss")
LOSSES.add("mean_squared_error", MeanSquaredError, "mse")
LOSSES.add("mean_absolute_error", MeanAbsoluteError, "mae")
LOSSES.add("mean_absolute_percentage_error", MeanAbsolutePercentageError, "mape")
LOSSES.add("mean_squared_logarithmic_error", MeanSquaredLogarithmicError, "msle")
LOSSES.add("huber", Huber, "huber_loss")
LOSSES.add("log_cosh", LogCosh)
LOSSES.add("poisson", Poisson)
LOSSES.add("cosine_similarity", CosineSimilarity)
LOSSES.add("binary_crossentropy", BinaryCrossentropy, "bce")
LOSSES.add("binary_focal_crossentropy", BinaryFocalCrossentropy)
LOSSES.add("categorical_crossentropy", CategoricalCrossentropy, "cce")
LOSSES.add("categorical_focal_crossentropy", CategoricalFocalCrossentropy)
LOSSES.add("sparse_categorical_crossentropy", SparseCategoricalCrossentropy)
LOSSES.add("hinge", Hinge)
LOSSES.add("squared_hinge", SquaredHinge)
LOSSES.add("categorical_hinge", CategoricalHinge)
LOSSES.add("kl_divergence", KLDivergence, "kld", "kullback_leibler_divergence")
LOSSES.add("perceptron", Perceptron)
LOSSES.add("dice", Dice, "dice_loss", "sparse_dice")
NAMES = LOSSES.names()


def get(name: str, **kwargs) -> Loss:
    return LOSSES.get(name)(**kwargs)


def is_classification(name: str) -> bool:
    return LOSSES.get(name).task != "regression"


# -- class weights (Keras's class_weight) -----------------------------------------------------------------
def check_class_weight(value, loss_name: str) -> list[str]:
    """Spec-time problems of ``train.class_weight`` (labels are checked against the data later)."""
    if value is None or loss_name not in LOSSES:
        return []
    if not is_classification(loss_name):
        return [f"train.class_weight: needs a classification loss, found loss {loss_name!r}"]
    if isinstance(value, dict):
        for label, w in value.items():
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
                return [f"train.class_weight.{label}: expected a non-negative number, found {w!r}"]
    return []


def _label_id(label: str, classes, n: int) -> int | None:
    if classes is None:  # targets already encoded: the key is the class id
        return int(label) if label.strip().lstrip("-").isdigit() and 0 <= int(label) < n else None
    for i, c in enumerate(classes):
        if str(c) == label:
            return i
        try:
            if float(c) == float(label):
                return i
        except (TypeError, ValueError):
            pass
    return None


def class_weights(value, class_ids, n_classes: int, classes=None):
    """Host (n_classes,) weights: "balanced" gives n / (n_classes * count_c) (sklearn's), a table
    { label = w } gives w to its labels and 1 to the others; ``class_ids`` are the training labels as ids."""
    if value == "balanced":
        counts = np.bincount(np.asarray(class_ids, dtype=np.int64).reshape(-1), minlength=n_classes)[:n_classes]
        return np.where(counts > 0, counts.sum() / (n_classes * np.maximum(counts, 1)), 0.0)
    out = np.ones(n_classes)
    for label, w in value.items():
        i = _label_id(str(label), classes, n_classes)
        if i is None:
            known = ", ".join(map(str, classes if classes is not None else range(n_classes)))
            raise ValueError(f"train.class_weight.{label}: not a class of the training data (classes: {known})")
        out[i] = float(w)
    return out


def label_ids(y, task: str):
    """One class id per sample from encoded targets (binary 0/1, one-hot or integer ids)."""
    xp = B.xp
    per_sample = y.ndim == 2 if task == "categorical" else y.size == len(y)
    if not per_sample:
        raise ValueError(
            f"train.class_weight: needs one label per sample, found targets of shape {list(y.shape[1:])} per sample"
        )
    if task == "binary":
        return (y.reshape(-1) > 0.5).astype(xp.int64)
    if task == "categorical":
        return y.argmax(axis=-1)
    return y.reshape(-1).astype(xp.int64)


# -- the loss and the output layer agree ---------------------------------------------------------------
_ACTIVATION_LAYERS = {"Softmax": "softmax", "ReLU": "relu", "ELU": "elu", "LeakyReLU": "leaky_relu", "PReLU": "prelu"}


def output_activation(entry: dict) -> tuple[str | None, int | None]:
    """(activation, units) of a validated last-layer entry; activation None when the layer keeps its own."""
    cls = layer_class(entry["type"])
    if entry["type"] in _ACTIVATION_LAYERS:
        return _ACTIVATION_LAYERS[entry["type"]], None
    if entry["type"] == "Activation":
        return entry.get("activation", "linear"), None
    if getattr(cls, "activation_follows", False):
        return entry.get("activation") or "linear", entry.get("units", entry.get("filters"))
    return None, None


def check_output(loss_value, last: dict) -> list[str]:
    """Problems (and warnings, on stderr) when the last layer's activation does not suit the loss."""
    name = loss_value if isinstance(loss_value, str) else loss_value["type"]
    from_logits = isinstance(loss_value, dict) and bool(loss_value.get("from_logits"))
    act, units = output_activation(last) if last else (None, None)
    if act is None:
        return []
    where = f"model.layers[-1] ({last.get('name', last['type'])})"
    cls = LOSSES.get(name)
    problems: list[str] = []
    if act == "step" and cls is not Perceptron:
        problems.append(
            f'{where}: a step output has zero gradient; train it with loss = "perceptron" '
            f'(and optimizer = "perceptron"), or use activation = "sigmoid" with {name}'
        )
    elif cls is Perceptron and act != "step":
        problems.append(f'train.loss: the perceptron loss needs a final activation = "step", found {act!r}')
    elif issubclass(cls, _FromLogits):
        natural = cls.logit_activation
        if from_logits and act == "linear":
            pass
        elif from_logits:
            problems.append(
                f"train.loss.from_logits: true expects a linear last layer, found activation {act!r}; "
                f"remove the activation or set from_logits = false"
            )
        elif not from_logits and act == "linear":
            problems.append(
                f"train.loss: {name} on a linear last layer treats raw scores as probabilities; set "
                f'activation = "{natural}" on {where} or loss = {{ type = "{name}", '
                f"from_logits = true }}"
            )
        elif act == "softmax" and units == 1:
            problems.append(
                f'{where}: softmax over 1 unit always outputs 1; use activation = "sigmoid" '
                f"with binary_crossentropy, or 2+ units with categorical_crossentropy"
            )
        elif cls is SparseCategoricalCrossentropy and act == "sigmoid":
            problems.append(
                f"{where}: sparse_categorical_crossentropy needs a softmax output, found sigmoid; "
                f'use activation = "softmax" (or binary_crossentropy for one unit)'
            )
        elif act not in ("sigmoid", "softmax"):
            problems.append(
                f'{where}: {name} needs probabilities, found activation {act!r}; use activation = "{natural}"'
            )
        elif act != natural:
            print(f"warning: {where}: {act} output with {name}; {natural} is the usual pairing", file=sys.stderr)
    elif cls is Dice and act != "softmax":
        problems.append(
            f"{where}: dice needs class probabilities, found activation {act!r}; use "
            f'activation = "softmax" (one unit per class)'
        )
    return problems
