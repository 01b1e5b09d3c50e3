"""Metrics (Keras names) computed over a whole set of predictions, read once per epoch.

``kind`` says how predictions and targets are encoded: ``binary`` (p in [0, 1] or step outputs,
y in {0, 1}), ``categorical`` (one-hot y), ``sparse`` (integer y), ``regression``.
- precision, recall, f1, f2, f0.5: macro averages over the classes that occur (binary: of the positive class);
  ``_micro`` pools the counts of every class, ``_weighted`` weights each class by its support;
  F_beta = (1 + b^2) P R / (b^2 P + R).
- auc: area under the ROC curve, exact (the Mann-Whitney statistic, ties counted half); pr_auc: average
  precision, sum_n (R_n - R_{n-1}) P_n over the distinct thresholds. Both pool every (class, sample) pair
  for more than one output column (Keras's ``multi_label = False``).
- top_k_categorical_accuracy: the true class is among the k = 5 highest scores (ties at the boundary count in);
  ``top<k>_accuracy`` (``top3_accuracy``) for any other k, and ``f<beta>`` (``f3``, ``f0.25``) for any
  F_beta, so a logged name says its parameter.
- mean_iou: mean over classes that occur of TP / (TP + FP + FN), every pixel of a mask pooled; pixel_accuracy:
  the share of pixels labelled right. Both leave out sparse truths outside [0, K) (a loss's ignore_class).
- box_iou: mean over samples of the intersection over union of the predicted and true boxes, each
  (x_min, y_min, x_max, y_max) on the last axis (a predicted box's corners are sorted first); 0 when
  the union is empty.
- crossentropy: the binary, categorical or sparse cross-entropy of the loss's encoding, p clipped to [1e-7, 1 - 1e-7].
- mae, mse, rmse, r2, mape (100 |y - p| / max(|y|, 1e-7)), msle ((log1p(max(p, 1e-7)) - log1p(max(y, 1e-7)))^2).
"""

from __future__ import annotations

import re
from typing import NamedTuple

import numpy as np

from nnctl import backend as B
from nnctl.registry import Registry

EPS = 1e-7
TOP_K = 5


class Metric(NamedTuple):
    fn: object  # (p, y, kind, n_classes) -> float
    classification: bool  # needs a classification loss
    higher_is_better: bool


METRICS: Registry[Metric] = Registry("metric")


def _add(name, fn, classification, higher, *aliases):
    METRICS.add(name, Metric(fn, classification, higher), *aliases)


def canonical(name: str) -> str:
    """The canonical name of a metric or its alias (``acc`` -> ``accuracy``); unknown names pass unchanged."""
    add_parametrised(name)
    return METRICS.canonical(name) if name in METRICS else str(name).lower()


_TOP_K_NAME = re.compile(r"top([1-9][0-9]{0,3})_accuracy")
_FBETA_NAME = re.compile(r"f([0-9]+(?:\.[0-9]+)?)")


def add_parametrised(name) -> None:
    """Register ``top<k>_accuracy`` or ``f<beta>`` on first use (a name that says its parameter)."""
    text = str(name).lower()
    if not isinstance(name, str) or name in METRICS:
        return
    if m := _TOP_K_NAME.fullmatch(text):
        _add(text, _top_k(int(m.group(1))), True, True)
    elif (m := _FBETA_NAME.fullmatch(text)) and float(m.group(1)) > 0:
        _add(text, _prf("f", "macro", float(m.group(1))), True, True)


# -- class labels and counts ----------------------------------------------------------------------------
def _labels(p, y, kind):
    """Predicted and true class ids as integer arrays of the same shape."""
    xp = B.xp
    if kind == "binary":
        return (p > 0.5).astype(xp.int64).reshape(-1), (y > 0.5).astype(xp.int64).reshape(-1)
    if kind == "categorical":
        return p.argmax(axis=-1).reshape(-1), y.argmax(axis=-1).reshape(-1)
    return p.argmax(axis=-1).reshape(-1), y.astype(xp.int64).reshape(-1)


def _confusion_counts(p, y, kind, n_classes):
    """Per-class true positives, predicted counts and true counts (float64)."""
    xp = B.xp
    pred, true = _labels(p, y, kind)
    k = 2 if kind == "binary" else n_classes
    tp = xp.bincount(true[pred == true], minlength=k)[:k]
    return tuple(
        c.astype(xp.float64) for c in (tp, xp.bincount(pred, minlength=k)[:k], xp.bincount(true, minlength=k)[:k])
    )


def _ratio(a, b):
    xp = B.xp
    return xp.where(b > 0, a / xp.maximum(b, 1e-300), 0.0)


def _fbeta(precision, recall, beta):
    b2 = beta * beta
    return _ratio((1 + b2) * precision * recall, b2 * precision + recall)


def _prf(which: str, average: str, beta: float = 1.0):
    """precision, recall or F_beta with a macro, micro or weighted average."""

    def fn(p, y, kind, n_classes):
        tp, predicted, actual = _confusion_counts(p, y, kind, n_classes)
        if average == "micro":
            tp, predicted, actual = tp.sum(), predicted.sum(), actual.sum()
        precision, recall = _ratio(tp, predicted), _ratio(tp, actual)
        val = {"precision": precision, "recall": recall}.get(which)
        if val is None:
            val = _fbeta(precision, recall, beta)
        if average == "micro":
            return val
        if average == "weighted":
            return (val * actual).sum() / max(float(actual.sum()), 1.0)
        if kind == "binary":
            return val[1]
        present = (actual > 0) | (predicted > 0)  # macro average over classes that occur
        return (val * present).sum() / B.xp.maximum(present.sum(), 1)

    return fn


def _accuracy(p, y, kind, n_classes):
    pred, true = _labels(p, y, kind)
    return (pred == true).mean()


def _top_k(k: int):
    """The share of samples whose true class is among the k highest scores (ties at the boundary count in)."""

    def fn(p, y, kind, n_classes):
        xp = B.xp
        if kind == "binary":  # two classes: always within the top k >= 2; top 1 is accuracy
            return 1.0 if k >= 2 else _accuracy(p, y, kind, n_classes)
        true = y.argmax(axis=-1) if kind == "categorical" else y.astype(xp.int64)
        score = xp.take_along_axis(p, true[..., None], axis=-1)
        return ((p > score).sum(axis=-1) < k).mean()

    return fn


# -- segmentation: per-pixel metrics (issue 18) -----------------------------------------------------------
def _kept_labels(p, y, kind, n_classes):
    """Predicted and true ids of every pixel (or sample) whose true id is a class: sparse ids outside
    [0, n_classes) (a loss's ``ignore_class``, such as 255) are left out, as Keras's ``ignore_class`` does."""
    pred, true = _labels(p, y, kind)
    if kind != "sparse":
        return pred, true
    keep = (true >= 0) & (true < n_classes)
    return pred[keep], true[keep]


def _kept_counts(p, y, kind, n_classes):
    """Per-class true positives, predicted counts and true counts over the kept pixels (float64)."""
    xp = B.xp
    pred, true = _kept_labels(p, y, kind, n_classes)
    k = 2 if kind == "binary" else n_classes
    tp = xp.bincount(true[pred == true], minlength=k)[:k]
    return tuple(
        c.astype(xp.float64) for c in (tp, xp.bincount(pred, minlength=k)[:k], xp.bincount(true, minlength=k)[:k])
    )


def _mean_iou(p, y, kind, n_classes):
    """Mean over the classes that occur (in truth or prediction) of TP / (TP + FP + FN), every pixel pooled."""
    tp, predicted, actual = _kept_counts(p, y, kind, n_classes)
    union = predicted + actual - tp
    present = union > 0
    return (_ratio(tp, union) * present).sum() / B.xp.maximum(present.sum(), 1)


def _pixel_accuracy(p, y, kind, n_classes):
    """The share of kept pixels whose predicted class is the true one."""
    pred, true = _kept_labels(p, y, kind, n_classes)
    return (pred == true).sum() / B.xp.maximum(true.size, 1)


# -- end segmentation ---------------------------------------------------------------------------------------


# -- ranking metrics (on the host: sorting with ties) ---------------------------------------------------
def _scores(p, y, kind):
    """Flat host scores and 0/1 truths, one pair per (sample, class) column."""
    p = B.to_numpy(p).astype(np.float64)
    y = B.to_numpy(y)
    if kind == "sparse":
        y = np.eye(p.shape[-1])[y.astype(np.int64)]
    return p.reshape(-1), (y.reshape(-1) > 0.5)


def _roc_auc(p, y, kind, n_classes):
    s, t = _scores(p, y, kind)
    n_pos, n_neg = int(t.sum()), int((~t).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")  # undefined with one class present
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)
    mid_rank = upper - (counts - 1) / 2  # 1-based average rank of each distinct score
    rank_sum = mid_rank[inverse][t].sum()
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _pr_auc(p, y, kind, n_classes):
    s, t = _scores(p, y, kind)
    n_pos = int(t.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    s, t = s[order], t[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # the last index of each distinct threshold
    tp = np.cumsum(t)[last]
    precision = tp / (last + 1)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


# -- errors and cross-entropy ---------------------------------------------------------------------------
def _diff(p, y, kind):
    yy = y.reshape(p.shape).astype(p.dtype) if kind != "sparse" else y
    return (p - yy).astype(B.xp.float64), yy


def _crossentropy(p, y, kind, n_classes):
    xp = B.xp
    q = xp.clip(p.astype(xp.float64), EPS, 1 - EPS)
    if kind == "binary":
        yy = y.reshape(p.shape).astype(xp.float64)
        return -(yy * xp.log(q) + (1 - yy) * xp.log(1 - q)).mean()
    if kind == "sparse":
        return -xp.log(xp.take_along_axis(q, y.astype(xp.int64)[..., None], axis=-1)).mean()
    return -(y * xp.log(q)).sum(axis=-1).mean()


def _mape(p, y, kind, n_classes):
    d, yy = _diff(p, y, kind)
    return (100 * B.xp.abs(d) / B.xp.maximum(B.xp.abs(yy.astype(B.xp.float64)), EPS)).mean()


def _msle(p, y, kind, n_classes):
    xp = B.xp
    _, yy = _diff(p, y, kind)
    d = xp.log1p(xp.maximum(p.astype(xp.float64), EPS)) - xp.log1p(xp.maximum(yy.astype(xp.float64), EPS))
    return (d * d).mean()


def _r2(p, y, kind, n_classes):
    d, yy = _diff(p, y, kind)
    yc = yy.astype(B.xp.float64) - yy.mean(axis=0)
    return 1 - (d * d).sum() / B.xp.maximum((yc * yc).sum(), 1e-300)


_add("accuracy", _accuracy, True, True, "acc", "categorical_accuracy", "sparse_categorical_accuracy", "binary_accuracy")
_add("precision", _prf("precision", "macro"), True, True)
_add("recall", _prf("recall", "macro"), True, True)
_add("f1", _prf("f1", "macro"), True, True, "f1_score")
_add("f2", _prf("f", "macro", 2.0), True, True, "f2_score")
_add("f0.5", _prf("f", "macro", 0.5), True, True, "f05", "f0.5_score")
for _avg in ("micro", "weighted"):
    _add(f"precision_{_avg}", _prf("precision", _avg), True, True)
    _add(f"recall_{_avg}", _prf("recall", _avg), True, True)
    _add(f"f1_{_avg}", _prf("f1", _avg), True, True)
_add("auc", _roc_auc, True, True, "roc_auc")
_add("pr_auc", _pr_auc, True, True, "auc_pr", "average_precision")
_add(
    "top_k_categorical_accuracy",
    _top_k(TOP_K),
    True,
    True,
    "sparse_top_k_categorical_accuracy",
    "top_k_accuracy",
    "top5_accuracy",
)
_add("mean_iou", _mean_iou, True, True, "iou", "one_hot_mean_iou")
_add("pixel_accuracy", _pixel_accuracy, True, True)  # segmentation (issue 18): accuracy without ignored pixels
_add(
    "crossentropy",
    _crossentropy,
    True,
    False,
    "binary_crossentropy",
    "categorical_crossentropy",
    "sparse_categorical_crossentropy",
    "log_loss",
)
_add("mae", lambda p, y, k, n: B.xp.abs(_diff(p, y, k)[0]).mean(), False, False, "mean_absolute_error")
_add("mse", lambda p, y, k, n: (_diff(p, y, k)[0] ** 2).mean(), False, False, "mean_squared_error")
_add("rmse", lambda p, y, k, n: B.xp.sqrt((_diff(p, y, k)[0] ** 2).mean()), False, False, "root_mean_squared_error")
_add("r2", _r2, False, True, "r2_score")


def _box_iou(p, y, kind, n_classes):
    xp = B.xp
    p, y = p.reshape(-1, 4).astype(xp.float64), y.reshape(-1, 4).astype(xp.float64)
    p = xp.concatenate([xp.minimum(p[:, :2], p[:, 2:]), xp.maximum(p[:, :2], p[:, 2:])], axis=1)
    wh = xp.clip(xp.minimum(p[:, 2:], y[:, 2:]) - xp.maximum(p[:, :2], y[:, :2]), 0, None)
    inter = wh[:, 0] * wh[:, 1]
    union = xp.prod(p[:, 2:] - p[:, :2], axis=1) + xp.prod(xp.clip(y[:, 2:] - y[:, :2], 0, None), axis=1) - inter
    return xp.where(union > 0, inter / xp.where(union > 0, union, 1.0), 0.0).mean()


_add("box_iou", _box_iou, False, True, "mean_box_iou")
_add("mape", _mape, False, False, "mean_absolute_percentage_error")
_add("msle", _msle, False, False, "mean_squared_logarithmic_error")
NAMES = METRICS.names()


def compute(names: list[str], p, y, kind: str, n_classes: int = 2) -> dict[str, float]:
    """Every metric in ``names`` for predictions p against targets y (device arrays); host floats out."""
    out = {}
    for name in names:
        m = canonical(name)
        if m not in METRICS:
            raise KeyError(name)
        metric = METRICS.get(m)
        if metric.classification and kind == "regression":
            raise ValueError(f"{m} needs a classification loss")
        out[m] = float(metric.fn(p, y, kind, n_classes))
    return out


def higher_is_better(name: str) -> bool:
    """Direction of a logged quantity (``val_`` prefix ignored): loss and errors go down."""
    base = canonical(name.removeprefix("val_"))
    return base in METRICS and METRICS.get(base).higher_is_better
