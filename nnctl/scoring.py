"""Scores of a model on labelled data, shared by training and inference: the loss and the metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nnctl import backend as B
from nnctl import losses
from nnctl.graph import Model, rows, take
from nnctl.outputs import Heads, device_targets, epoch_metrics

__all__ = ["epoch_metrics", "evaluate_model", "fuses"]


def fuses(model: Model, loss: losses.Loss) -> bool:
    """Whether the loss takes the logits of the model's output activation (softmax/sigmoid + cross-entropy)."""
    act = model.output_activation()
    return act is not None and act in loss.fused


def evaluate_model(
    model: Model,
    loss: losses.Loss | None,
    x,
    y,
    metric_names: list[str],
    task: str,
    n_classes: int,
    decode: Callable | None = None,
    batch_size: int = 1024,
    on_batch: Callable[[int, int], None] | None = None,
    outputs: list | None = None,
    heads: Heads | None = None,
) -> dict:
    """Loss (with the regularisation term, as in training) and every metric in inference mode; no optimizer.

    ``heads`` gives a model's several outputs with their losses (else one output with ``loss``);
    ``on_batch(done, total)`` follows the rows (host counts: no device read); a list given as ``outputs``
    receives the model's (N, ...) device outputs (packed side by side for named outputs), for callers that
    need them too (no second forward pass)."""
    if heads is None:
        assert loss is not None
        heads = Heads.single(model, loss, metric_names, task, n_classes, decode)
    total: Any = 0.0
    sums: dict = {}
    outs, ys = [], []
    n = rows(x)
    for start in range(0, n, batch_size):
        part = slice(start, start + batch_size)
        xb, yb = model.device_inputs(take(x, part)), device_targets(take(y, part))
        out = model.forward(xb, training=False)
        value, parts = heads.value(out, yb)
        size = min(start + batch_size, n) - start
        total = total + value * size
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + v * size
        outs.append(heads.pack(out))
        ys.append(yb)
        model._caches = []
        if on_batch is not None:
            on_batch(min(start + batch_size, n), n)
    logs = {"loss": float(total) / max(n, 1)}
    if model.has_regularization():
        logs["loss"] += float(model.regularization(add_grads=False))
    logs.update(heads.loss_logs({k: float(v) for k, v in sums.items()}, n))
    out_all = B.xp.concatenate(outs) if outs else B.xp.zeros((0, *heads.width()), model.dtype)
    if outputs is not None:
        outputs.append(out_all)
    y_all = (
        ({k: B.xp.concatenate([b[k] for b in ys]) for k in ys[0]} if isinstance(ys[0], dict) else B.xp.concatenate(ys))
        if ys
        else y
    )
    logs.update(heads.metrics(out_all, y_all))
    return logs
