"""Scores of a model on labelled data, shared by training and inference: the loss and the metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nnctl import backend as B
from nnctl import losses, metrics
from nnctl.graph import Model


def fuses(model: Model, loss: losses.Loss) -> bool:
    """Whether the loss takes the logits of the model's output activation (softmax/sigmoid + cross-entropy)."""
    act = model.output_activation()
    return act is not None and act in loss.fused


def epoch_metrics(loss: losses.Loss, names: list[str], p, y, task: str, n_classes: int,
                  decode: Callable | None = None) -> dict:
    """Every metric in ``names`` of outputs ``p`` against targets ``y`` (regression in original units)."""
    if not names:
        return {}
    p = loss.probabilities(p)
    if decode is not None and task == "regression":
        p, y = decode(p), decode(y)
    return metrics.compute(names, p, y, task, n_classes)


def evaluate_model(model: Model, loss: losses.Loss, x, y, metric_names: list[str], task: str, n_classes: int,
                   decode: Callable | None = None, batch_size: int = 1024,
                   on_batch: Callable[[int, int], None] | None = None, outputs: list | None = None) -> dict:
    """Loss (with the regularisation term, as in training) and every metric in inference mode; no optimizer.

    ``on_batch(done, total)`` follows the rows (host counts: no device read); a list given as ``outputs``
    receives the model's (N, ...) device outputs, for callers that need them too (no second forward pass)."""
    fused = fuses(model, loss)
    total: Any = 0.0
    outs, ys = [], []
    for start in range(0, len(x), batch_size):
        xb = B.asarray(x[start:start + batch_size], dtype=model.input_dtype)
        yb = B.asarray(y[start:start + batch_size])
        out = model.forward(xb, training=False)
        if fused:
            value = loss.fused_value_grad(model.logits(), yb, model.output_activation())[0]
        else:
            value = loss.value(out, yb)
        total = total + value * len(xb)
        outs.append(out)
        ys.append(yb)
        model._caches = []
        if on_batch is not None:
            on_batch(min(start + batch_size, len(x)), len(x))
    logs = {"loss": float(total) / max(len(x), 1)}
    if model.has_regularization():
        logs["loss"] += float(model.regularization(add_grads=False))
    out_all = B.xp.concatenate(outs)
    if outputs is not None:
        outputs.append(out_all)
    logs.update(epoch_metrics(loss, metric_names, out_all, B.xp.concatenate(ys), task, n_classes, decode))
    return logs
