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
from nnctl.fields import PositiveFloat
from nnctl.ops.activations import sigmoid, softmax
from nnctl.registry import Registry

EPS = 1e-7


class Loss:
    """Base: ``value(p, y)`` -> scalar, ``grad(p, y)`` -> dL/dp; fused variants on logits."""

    fused: frozenset = frozenset()  # output activations this loss can fuse with
    target = "dense"  # dense (same shape as output), sparse (integer class ids), or binary
    task = "regression"  # how targets are encoded: regression, binary, categorical or sparse
    from_logits = False  # the model outputs logits; the loss applies ``logit_activation`` itself
    logit_activation: str | None = None

    def probabilities(self, out):
        """The model's outputs as the metrics and ``--proba`` read them (logits through the activation)."""
        if not self.from_logits:
            return out
        out = B.asarray(out)
        return sigmoid(out) if self.logit_activation == "sigmoid" else softmax(out)

    def value(self, p, y):
        raise NotImplementedError

    def grad(self, p, y):
        raise NotImplementedError

    def fused_value_grad(self, z, y, activation):
        raise NotImplementedError

    def value_grad(self, p, y):
        """(value, dL/dp) of one batch, as the training step needs both."""
        return self.value(p, y), self.grad(p, y)

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
    def __init__(self, delta: PositiveFloat = 1.0):
        self.delta = delta

    def value(self, p, y):
        a = B.xp.abs(p - y)
        q = B.xp.minimum(a, self.delta)
        return (0.5 * q * q + self.delta * (a - q)).sum() / p.size

    def grad(self, p, y):
        return B.xp.clip(p - y, -self.delta, self.delta) * p.dtype.type(1.0 / p.size)


class _FromLogits(Loss):
    """A cross-entropy that can take logits (``from_logits = true``, Keras's meaning): a linear last layer."""

    def __init__(self, from_logits: bool = False):
        self.from_logits = bool(from_logits)

    # with from_logits, p are logits: the fused formulas (log-softmax, log1p(exp(-|z|))) apply to them
    def value(self, p, y):
        return self.fused_value_grad(p, y, self.logit_activation)[0] if self.from_logits else self._value(p, y)

    def grad(self, p, y):
        return self.fused_value_grad(p, y, self.logit_activation)[1] if self.from_logits else self._grad(p, y)

    def value_grad(self, p, y):
        if self.from_logits:  # one pass gives both
            return self.fused_value_grad(p, y, self.logit_activation)
        return self._value(p, y), self._grad(p, y)


class BinaryCrossentropy(_FromLogits):
    fused = frozenset({"sigmoid"})
    target = "binary"
    task = "binary"
    logit_activation = "sigmoid"

    def _value(self, p, y):
        xp = B.xp
        q = xp.clip(p, EPS, 1 - EPS)
        return -(y * xp.log(q) + (1 - y) * xp.log(1 - q)).sum() / p.size

    def _grad(self, p, y):
        q = B.xp.clip(p, EPS, 1 - EPS)
        return (q - y) / (q * (1 - q)) * p.dtype.type(1.0 / p.size)

    def fused_value_grad(self, z, y, activation):
        xp = B.xp
        loss = (xp.maximum(z, 0) - z * y + xp.log1p(xp.exp(-xp.abs(z)))).sum() / z.size
        return loss, (sigmoid(z) - y) * z.dtype.type(1.0 / z.size)


class CategoricalCrossentropy(_FromLogits):
    fused = frozenset({"softmax"})
    task = "categorical"
    logit_activation = "softmax"

    def _value(self, p, y):
        xp = B.xp
        return -(y * xp.log(xp.clip(p, EPS, 1.0))).sum() / self._count(p)

    def _grad(self, p, y):
        return -y / B.xp.clip(p, EPS, 1.0) * p.dtype.type(1.0 / self._count(p))

    def fused_value_grad(self, z, y, activation):
        xp = B.xp
        shifted = z - z.max(axis=-1, keepdims=True)
        log_sum = xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))
        loss = -(y * (shifted - log_sum)).sum() / self._count(z)
        return loss, (softmax(z) - y) * z.dtype.type(1.0 / self._count(z))


class SparseCategoricalCrossentropy(_FromLogits):
    """Categorical cross-entropy with integer class ids y of shape p.shape[:-1]."""

    fused = frozenset({"softmax"})
    target = "sparse"
    task = "sparse"
    logit_activation = "softmax"

    def _pick(self, a, y):
        xp = B.xp
        return xp.take_along_axis(a, y.astype(xp.int64)[..., None], axis=-1)[..., 0]

    def _value(self, p, y):
        return -B.xp.log(B.xp.clip(self._pick(p, y), EPS, 1.0)).sum() / self._count(p)

    def _grad(self, p, y):
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
    task = "binary"

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

    task = "categorical"

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
    task = "binary"

    def value(self, p, y):
        return B.xp.abs(p - y).sum() / p.size  # reported as the error rate of the step outputs

    def grad(self, p, y):
        raise ValueError("the perceptron loss needs a final 'step' activation")

    def fused_value_grad(self, z, y, activation):
        wrong = (z >= 0).astype(z.dtype) - y  # step(z) - y: +-1 where misclassified, else 0
        return B.xp.abs(wrong).sum() / z.size, wrong * z.dtype.type(1.0 / z.size)


LOSSES: Registry[type[Loss]] = Registry("loss")
LOSSES.add("mean_squared_error", MeanSquaredError, "mse")
LOSSES.add("mean_absolute_error", MeanAbsoluteError, "mae")
LOSSES.add("huber", Huber, "huber_loss")
LOSSES.add("binary_crossentropy", BinaryCrossentropy, "bce")
LOSSES.add("categorical_crossentropy", CategoricalCrossentropy, "cce")
LOSSES.add("sparse_categorical_crossentropy", SparseCategoricalCrossentropy)
LOSSES.add("hinge", Hinge)
LOSSES.add("kl_divergence", KLDivergence, "kld", "kullback_leibler_divergence")
LOSSES.add("perceptron", Perceptron)
NAMES = LOSSES.names()


def get(name: str, **kwargs) -> Loss:
    return LOSSES.get(name)(**kwargs)


def is_classification(name: str) -> bool:
    return LOSSES.get(name).task != "regression"


# -- the loss and the output layer agree ---------------------------------------------------------------
_ACTIVATION_LAYERS = {"Softmax": "softmax", "ReLU": "relu", "ELU": "elu", "LeakyReLU": "leaky_relu",
                      "PReLU": "prelu"}


def output_activation(entry: dict) -> tuple[str | None, int | None]:
    """(activation, units) of a validated last-layer entry; activation None when the layer keeps its own."""
    from nnctl.layers import layer_class  # noqa: PLC0415 - layers sit above losses in import order

    cls = layer_class(entry["type"])
    if entry["type"] in _ACTIVATION_LAYERS:
        return _ACTIVATION_LAYERS[entry["type"]], None
    if entry["type"] == "Activation":
        return entry.get("activation", "linear"), None
    if getattr(cls, "activation_is_node", False):
        return entry.get("activation") or "linear", entry.get("units", entry.get("filters"))
    return None, None


def check_output(loss_value, last: dict) -> list[str]:
    """Problems (and warnings, on stderr) when the last layer's activation does not suit the loss."""
    import sys  # noqa: PLC0415

    name = loss_value if isinstance(loss_value, str) else loss_value["type"]
    from_logits = isinstance(loss_value, dict) and bool(loss_value.get("from_logits"))
    act, units = output_activation(last) if last else (None, None)
    if act is None:
        return []
    where = f"model.layers[-1] ({last.get('name', last['type'])})"
    cls = LOSSES.get(name)
    problems: list[str] = []
    if act == "step" and cls is not Perceptron:
        problems.append(f"{where}: a step output has zero gradient; train it with loss = \"perceptron\" "
                        f"(and optimizer = \"perceptron\"), or use activation = \"sigmoid\" with {name}")
    elif cls is Perceptron and act != "step":
        problems.append(f"train.loss: the perceptron loss needs a final activation = \"step\", found {act!r}")
    elif issubclass(cls, _FromLogits):
        natural = cls.logit_activation
        if from_logits and act == "linear":
            pass
        elif from_logits:
            problems.append(f"train.loss.from_logits: true expects a linear last layer, found activation {act!r}; "
                            f"remove the activation or set from_logits = false")
        elif not from_logits and act == "linear":
            problems.append(f"train.loss: {name} on a linear last layer treats raw scores as probabilities; set "
                            f"activation = \"{natural}\" on {where} or loss = {{ type = \"{name}\", "
                            f"from_logits = true }}")
        elif act == "softmax" and units == 1:
            problems.append(f"{where}: softmax over 1 unit always outputs 1; use activation = \"sigmoid\" "
                            f"with binary_crossentropy, or 2+ units with categorical_crossentropy")
        elif cls is SparseCategoricalCrossentropy and act == "sigmoid":
            problems.append(f"{where}: sparse_categorical_crossentropy needs a softmax output, found sigmoid; "
                            f"use activation = \"softmax\" (or binary_crossentropy for one unit)")
        elif act not in ("sigmoid", "softmax"):
            problems.append(f"{where}: {name} needs probabilities, found activation {act!r}; use "
                            f"activation = \"{natural}\"")
        elif act != natural:
            print(f"warning: {where}: {act} output with {name}; {natural} is the usual pairing", file=sys.stderr)
    return problems
