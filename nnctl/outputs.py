"""A model's outputs with their losses, weights and metrics (Keras's ``loss={...}``, ``loss_weights``).

Total loss L = sum_o w_o * L_o(p_o, y_o); each output's gradient is w_o * dL_o/dp_o (on the logits when
the output's activation fuses with its loss: the gradient then seeds the activation's input node,
``Model.logits_node``), and ``Model.backward_many`` sums where paths meet.
One output is the one-head case: its name is "" and its logs carry no prefix; with several, each
output's loss and metrics are logged as ``<name>_loss`` and ``<name>_<metric>``.

Outputs travel through the trainer's per-batch buffers packed side by side as one (N, sum_o size_o)
array (``pack``/``unpack``), so gathering, resuming and concatenating see one array as before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from nnctl import backend as B
from nnctl import losses, metrics
from nnctl.graph import Model


@dataclass
class Head:
    """One output: the node it reads, its loss and weight, its metrics and how its targets are encoded."""

    name: str  # "" for the one unnamed output
    node: str
    loss: losses.Loss
    weight: float = 1.0
    metrics: tuple = ()
    task: str = "regression"
    n_classes: int = 2
    decode: Callable | None = None  # regression outputs/targets back to original units for metrics
    fused: bool = False


def fuses(model: Model, node: str, loss: losses.Loss) -> bool:
    """Whether ``loss`` takes the logits of output ``node``'s activation (softmax/sigmoid + cross-entropy): a
    property of the (output activation node, loss) pair. The fused gradient seeds the activation's input, so
    it holds when other nodes or heads read the output too (their gradients pass through the activation)."""
    act = model.output_activation(node)
    return act is not None and act in loss.fused


class Heads:
    """Every output of a model, in the spec's order."""

    def __init__(self, model: Model, heads: list[Head]):
        self.model, self.heads = model, heads
        for h in heads:
            h.fused = fuses(model, h.node, h.loss)
        self.named = model.named_outputs

    @classmethod
    def single(
        cls, model: Model, loss: losses.Loss, names, task: str, n_classes: int, decode: Callable | None = None
    ) -> Heads:
        return cls(model, [Head("", model.outputs[0], loss, 1.0, tuple(names), task, n_classes, decode)])

    def prefix(self, head: Head) -> str:
        return f"{head.name}_" if len(self.heads) > 1 else ""

    # -- one batch ----------------------------------------------------------------------------
    def _outs(self, out) -> dict:
        return out if self.named else {self.heads[0].node: out}

    def _targets(self, yb) -> dict:
        return yb if isinstance(yb, dict) else {self.heads[0].name: yb}

    def value_grad(self, out, yb, weights=None, scale: float = 1.0) -> tuple[Any, dict]:
        """Backpropagate the weighted sum of the outputs' losses from the last forward pass (gradients
        scaled by ``scale``): (total loss, {output name: its loss}) on the device."""
        model, outs, ys = self.model, self._outs(out), self._targets(yb)
        seeds: dict = {}
        total: Any = 0.0
        parts = {}
        for h in self.heads:
            if h.fused:
                value, grad = h.loss.fused_value_grad(
                    model.logits(h.node), ys[h.name], model.output_activation(h.node), weights
                )
            else:
                value, grad = h.loss.value_grad(outs[h.node], ys[h.name], weights)
            factor = h.weight * scale
            if factor != 1.0:
                grad = grad * grad.dtype.type(factor)
            at = model.logits_node(h.node) if h.fused else h.node
            seeds[at] = grad if at not in seeds else seeds[at] + grad
            parts[h.name] = value
            total = value if len(self.heads) == 1 and h.weight == 1.0 else total + h.weight * value
        model.backward_many(seeds)
        return total, parts

    def value(self, out, yb) -> tuple[Any, dict]:
        """(total loss, {output name: its loss}) of the last forward pass, no gradient."""
        model, outs, ys = self.model, self._outs(out), self._targets(yb)
        total: Any = 0.0
        parts = {}
        for h in self.heads:
            if h.fused:
                value = h.loss.fused_value_grad(model.logits(h.node), ys[h.name], model.output_activation(h.node))[0]
            else:
                value = h.loss.value(outs[h.node], ys[h.name])
            parts[h.name] = value
            total = value if len(self.heads) == 1 and h.weight == 1.0 else total + h.weight * value
        return total, parts

    # -- outputs as one array -----------------------------------------------------------------
    def width(self) -> tuple:
        """The packed outputs' shape per sample."""
        if not self.named:
            return tuple(self.model.output_shapes[self.heads[0].node])
        return (sum(int(np.prod(self.model.output_shapes[n])) for n in self.model.outputs),)

    def pack(self, out):
        """Named outputs {node: (N, ...)} side by side as one (N, sum of sizes) array; one output as it is."""
        if not self.named:
            return out
        return B.xp.concatenate([out[n].reshape(len(out[n]), -1) for n in self.model.outputs], axis=1)

    def unpack(self, p) -> dict:
        """The inverse of ``pack``: {node: (N, ...)}."""
        if not self.named:
            return {self.heads[0].node: p}
        out, start = {}, 0
        for n in self.model.outputs:
            shape = self.model.output_shapes[n]
            size = int(np.prod(shape))
            out[n] = p[:, start : start + size].reshape(len(p), *shape)
            start += size
        return out

    # -- logs ---------------------------------------------------------------------------------
    def metrics(self, p, y) -> dict:
        """Every output's metrics of packed outputs ``p`` against targets ``y`` (device arrays)."""
        outs, ys, logs = self.unpack(p), self._targets(y), {}
        for h in self.heads:
            found = epoch_metrics(h.loss, list(h.metrics), outs[h.node], ys[h.name], h.task, h.n_classes, h.decode)
            logs.update({f"{self.prefix(h)}{k}": v for k, v in found.items()})
        return logs

    def loss_logs(self, sums: dict, n: int) -> dict:
        """``<name>_loss`` per output from summed (loss * rows) host values; nothing for one output."""
        if len(self.heads) == 1:
            return {}
        return {f"{h.name}_loss": float(sums[h.name]) / max(n, 1) for h in self.heads}


class PartSums:
    """Each output's training loss over an epoch's batches: sum_b loss_o,b * n_b on the device, and the rows
    (after a mid-epoch resume, those of the rest of the epoch)."""

    def __init__(self):
        self.sums: dict = {}
        self.rows = 0

    def add(self, parts: dict, n: int) -> None:
        for k, v in parts.items():
            self.sums[k] = self.sums.get(k, 0.0) + v * n
        self.rows += n

    def logs(self, heads: Heads, reduce) -> dict:
        """``<name>_loss`` per output, summed over every rank by ``reduce``; nothing for one output."""
        if len(heads.heads) == 1:
            return {}
        names = [h.name for h in heads.heads]
        total = reduce(np.array([float(self.sums.get(k, 0.0)) for k in names] + [self.rows]))
        return heads.loss_logs(dict(zip(names, total[:-1])), int(total[-1]))


def epoch_metrics(
    loss: losses.Loss, names: list[str], p, y, task: str, n_classes: int, decode: Callable | None = None
) -> dict:
    """Every metric in ``names`` of outputs ``p`` against targets ``y`` (regression in original units)."""
    if not names:
        return {}
    p = loss.probabilities(p)
    if decode is not None and task == "regression":
        p, y = decode(p), decode(y)
    return metrics.compute(names, p, y, task, n_classes)


def device_targets(y):
    """Host targets (one array, or {output name: array}) on the device."""
    return {k: B.asarray(v) for k, v in y.items()} if isinstance(y, dict) else B.asarray(y)
