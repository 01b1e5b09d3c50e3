"""Per-class precision, recall, F1 and support, and the confusion counts they come from (vectorised).

With counts C[i, j] = samples of true class i predicted as class j (K classes):
  support_i = sum_j C[i, j]     precision_i = C[i, i] / sum_j C[j, i]     recall_i = C[i, i] / support_i
  f1_i = 2 precision_i recall_i / (precision_i + recall_i)
A ratio whose denominator is 0 is 0 (scikit-learn's ``zero_division=0``). Macro averages weight every class
equally; weighted averages weight each class by its support.
"""

from __future__ import annotations

import numpy as np


def confusion_from_ids(true_ids, pred_ids, n_classes: int) -> np.ndarray:
    """(K, K) int64 counts of (true, predicted) class-id pairs, by one bincount over t * K + p."""
    t = np.asarray(true_ids, dtype=np.int64).ravel()
    p = np.asarray(pred_ids, dtype=np.int64).ravel()
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def label_ids(labels, classes) -> np.ndarray:
    """Each label's index in ``classes``; a label not among them raises ValueError naming it."""
    classes = np.asarray(classes)
    labels = np.asarray(labels).ravel()
    order = np.argsort(classes, kind="stable")
    pos = np.clip(np.searchsorted(classes[order], labels), 0, len(classes) - 1)
    ids = order[pos]
    bad = np.nonzero(classes[ids] != labels)[0]
    if len(bad):
        raise ValueError(f"label {labels[bad[0]].item()!r} is not one of the classes")
    return ids


def confusion_counts(y_true_labels, y_pred_labels, classes) -> np.ndarray:
    """counts[i, j] = samples of true class classes[i] predicted as classes[j]."""
    return confusion_from_ids(label_ids(y_true_labels, classes), label_ids(y_pred_labels, classes), len(classes))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros(len(num)), where=den > 0)


def per_class(counts: np.ndarray, classes) -> dict:
    """{"per_class": {label: {precision, recall, f1, support}}, "macro_avg": ..., "weighted_avg": ...}."""
    counts = np.asarray(counts, dtype=np.int64)
    tp = np.diag(counts).astype(np.float64)
    support = counts.sum(axis=1)
    precision = _ratio(tp, counts.sum(axis=0).astype(np.float64))
    recall = _ratio(tp, support.astype(np.float64))
    f1 = _ratio(2 * precision * recall, precision + recall)
    rows = {
        str(c): {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, c in enumerate(np.asarray(classes).tolist())
    }
    total = max(int(support.sum()), 1)
    w = support / total
    return {
        "per_class": rows,
        "macro_avg": {"precision": float(precision.mean()), "recall": float(recall.mean()), "f1": float(f1.mean())},
        "weighted_avg": {"precision": float(w @ precision), "recall": float(w @ recall), "f1": float(w @ f1)},
    }


def class_ids(values: np.ndarray, task: str) -> np.ndarray:
    """Class ids of model outputs or encoded targets: 0/1 for binary (> 0.5), argmax for one-hot rows,
    the ids themselves for sparse targets (integer arrays)."""
    v = np.asarray(values)
    if task == "binary":
        return (v.reshape(len(v), -1)[:, 0] > 0.5).astype(np.int64)
    if task == "sparse" and v.dtype.kind in "iu":
        return v.astype(np.int64).ravel()
    return v.argmax(axis=-1).ravel()


def classification_report(outputs, y, task: str, classes) -> dict:
    """The per-class report and confusion counts of outputs against encoded targets ``y``."""
    k = len(classes)
    true, pred = class_ids(y, task), class_ids(outputs, task)
    keep = (true >= 0) & (true < k)  # a mask pixel of a loss's ignore_class (segmentation) has no class
    counts = confusion_from_ids(true[keep], pred[keep], k)
    out = per_class(counts, classes)
    out["confusion"] = {"classes": np.asarray(classes).tolist(), "counts": counts.tolist()}
    return out
