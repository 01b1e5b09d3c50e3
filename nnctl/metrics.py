"""Metrics (Keras names) computed on the device over a whole set of predictions, read once per epoch.

``kind`` says how predictions and targets are encoded: ``binary`` (p in [0, 1] or step outputs,
y in {0, 1}), ``categorical`` (one-hot y), ``sparse`` (integer y), ``regression``. Precision, recall
and f1 are macro averages over classes (binary: of the positive class).
"""

from __future__ import annotations

from nnctl import backend as B
from nnctl.registry import Registry

METRICS: Registry[str] = Registry("metric")
for _name, *_aliases in (
        ("accuracy", "acc", "categorical_accuracy", "sparse_categorical_accuracy", "binary_accuracy"),
        ("precision",), ("recall",), ("f1", "f1_score"), ("mae", "mean_absolute_error"),
        ("mse", "mean_squared_error"), ("rmse", "root_mean_squared_error"), ("r2", "r2_score")):
    METRICS.add(_name, _name, *_aliases)
NAMES = ["accuracy", "precision", "recall", "f1", "mae", "mse", "rmse", "r2"]
CLASSIFICATION = ("accuracy", "precision", "recall", "f1")


def canonical(name: str) -> str:
    """The canonical name of a metric or its alias (``acc`` -> ``accuracy``); unknown names pass unchanged."""
    return METRICS.canonical(name) if name in METRICS else str(name).lower()


def _labels(p, y, kind):
    """Predicted and true class ids as integer arrays of the same shape."""
    xp = B.xp
    if kind == "binary":
        return (p > 0.5).astype(xp.int64).reshape(-1), (y > 0.5).astype(xp.int64).reshape(-1)
    if kind == "categorical":
        return p.argmax(axis=-1).reshape(-1), y.argmax(axis=-1).reshape(-1)
    return p.argmax(axis=-1).reshape(-1), y.astype(xp.int64).reshape(-1)


def _confusion_counts(p, y, kind, n_classes):
    """Per-class true positives, predicted counts and true counts."""
    xp = B.xp
    pred, true = _labels(p, y, kind)
    k = 2 if kind == "binary" else n_classes
    tp = xp.bincount(true[pred == true], minlength=k)[:k]
    return tp, xp.bincount(pred, minlength=k)[:k], xp.bincount(true, minlength=k)[:k]


def _prf(p, y, kind, n_classes):
    xp = B.xp
    tp, predicted, actual = (c.astype(xp.float64) for c in _confusion_counts(p, y, kind, n_classes))
    precision = xp.where(predicted > 0, tp / xp.maximum(predicted, 1), 0.0)
    recall = xp.where(actual > 0, tp / xp.maximum(actual, 1), 0.0)
    f1 = xp.where(precision + recall > 0, 2 * precision * recall / xp.maximum(precision + recall, 1e-300), 0.0)
    if kind == "binary":
        return precision[1], recall[1], f1[1]
    present = (actual > 0) | (predicted > 0)  # macro average over classes that occur
    n = xp.maximum(present.sum(), 1)
    return (precision * present).sum() / n, (recall * present).sum() / n, (f1 * present).sum() / n


def compute(names: list[str], p, y, kind: str, n_classes: int = 2) -> dict[str, float]:
    """Every metric in ``names`` for predictions p against targets y (device arrays); host floats out."""
    xp = B.xp
    out = {}
    prf = None
    for name in names:
        m = canonical(name)
        if m == "accuracy":
            if kind == "regression":
                raise ValueError("accuracy needs a classification loss")
            pred, true = _labels(p, y, kind)
            val = (pred == true).mean()
        elif m in ("precision", "recall", "f1"):
            if kind == "regression":
                raise ValueError(f"{m} needs a classification loss")
            prf = prf or _prf(p, y, kind, n_classes)
            val = prf[("precision", "recall", "f1").index(m)]
        else:
            yy = y.reshape(p.shape).astype(p.dtype) if kind != "sparse" else y
            d = (p - yy).astype(xp.float64)
            if m == "mae":
                val = xp.abs(d).mean()
            elif m == "mse":
                val = (d * d).mean()
            elif m == "rmse":
                val = xp.sqrt((d * d).mean())
            elif m == "r2":
                yc = yy.astype(xp.float64) - yy.mean(axis=0)
                val = 1 - (d * d).sum() / xp.maximum((yc * yc).sum(), 1e-300)
            else:
                raise KeyError(name)
        out[m] = float(val)
    return out


def higher_is_better(name: str) -> bool:
    """Direction of a logged quantity (``val_`` prefix ignored): loss and errors go down."""
    base = canonical(name.removeprefix("val_"))
    return base in ("accuracy", "precision", "recall", "f1", "r2")
