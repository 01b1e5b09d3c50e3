"""Where a training (or predict) step spends its time: every node's forward and backward, the loss, the
regularisation and the optimizer, timed with ``perf_counter`` around each call, on synthetic batches.

The timers are instance wrappers installed on the model's layers, the loss and the optimizer for the
timed loop and removed after it (nothing in the classes changes). On a GPU every timed call is bracketed
by a device synchronisation, so each time is the work of that call and not of queued kernels; the step's
wall time then includes those waits. A node's time includes the activation it carries.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from nnctl import backend as B
from nnctl.errors import SpecError
from nnctl.graph import INPUT


@dataclass
class Profile:
    """Seconds summed over ``iterations`` steps: per node (forward, backward), per step part, and the wall time."""

    batch: int
    iterations: int
    wall: float
    nodes: list[dict]  # {name, type, forward, backward}
    parts: dict = field(default_factory=dict)  # loss, regularization, optimizer, batch (host gather and copy)

    def to_dict(self) -> dict:
        """Milliseconds per step for each node and part, and samples per second."""
        per = 1000.0 / self.iterations
        layers = [
            {
                "name": n["name"],
                "type": n["type"],
                "forward_ms": n["forward"] * per,
                "backward_ms": n["backward"] * per,
                "total_ms": (n["forward"] + n["backward"]) * per,
            }
            for n in self.nodes
        ]
        parts = {f"{k}_ms": v * per for k, v in self.parts.items()}
        accounted = sum(n["forward"] + n["backward"] for n in self.nodes) + sum(self.parts.values())
        step = self.wall * per
        return {
            "batch": self.batch,
            "iterations": self.iterations,
            "step_ms": step,
            "samples_per_second": self.batch * self.iterations / self.wall if self.wall > 0 else 0.0,
            "forward_ms": sum(r["forward_ms"] for r in layers),
            "backward_ms": sum(r["backward_ms"] for r in layers),
            **parts,
            "other_ms": max(0.0, (self.wall - accounted) * per),
            "layers": layers,
        }


class _Timers:
    """Timing wrappers on every node, the loss and the optimizer; ``remove()`` puts the originals back."""

    def __init__(self, model, trainer=None, sync: bool = False):
        self.sync = sync
        self.seconds: dict = {}
        self._installed: list = []
        self._active: set = set()
        for i, entry in enumerate(model.entries()):  # an entry's time includes its activation node's
            for node in (entry.node, entry.activation):
                for part in ("forward", "backward") if node is not None else ():
                    self._wrap(node.layer, part, (i, part))
                if node is not None:
                    self._wrap(node.layer, "forward_in_place", (i, "forward"))
        if trainer is not None:
            for name in ("value_grad", "fused_value_grad"):
                self._wrap(trainer.loss, name, "loss")
            self._wrap(trainer.optimizer, "step", "optimizer")
            self._wrap(model, "regularization", "regularization")

    def _wrap(self, obj, attr: str, key) -> None:
        fn = getattr(obj, attr, None)
        if fn is None:
            return
        seconds, sync, active = self.seconds, self.sync, self._active
        seconds.setdefault(key, 0.0)

        def timed(*a, **kw):
            if key in active:  # value_grad calling fused_value_grad: time the outer call only
                return fn(*a, **kw)
            active.add(key)
            if sync:
                B.synchronize()
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                if sync:
                    B.synchronize()
                seconds[key] += time.perf_counter() - t
                active.discard(key)

        setattr(obj, attr, timed)
        self._installed.append((obj, attr))

    def remove(self) -> None:
        for obj, attr in self._installed:
            del obj.__dict__[attr]  # the class's method shows through again
        self._installed = []


def profile(model, trainer, batch_fn, iterations: int, warmup: int = 3, predict: bool = False) -> Profile:
    """Time ``iterations`` steps, each on ``batch_fn(i) -> (x, y)`` host arrays, after ``warmup`` untimed ones.

    A training step is what ``Trainer.run_epoch`` does per batch: move the batch, forward, loss, backward,
    regularisation, optimizer step. ``predict`` times ``Model.forward`` in inference mode instead."""
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, found {iterations}")
    sync = B.xp is not np
    regularized = model.has_regularization()
    gather = [0.0]

    def step(i):
        t = time.perf_counter()
        x, y = batch_fn(i)
        xb, yb = B.asarray(x, dtype=model.input_dtype), B.asarray(y)
        if sync:
            B.synchronize()
        gather[0] += time.perf_counter() - t
        if predict:
            model.forward(xb, training=False)
            model._caches = []
            return
        trainer.loss_and_grad(xb, yb)
        if regularized:
            model.regularization(add_grads=True)
        trainer.optimizer.step(
            model.flat_params, model.flat_grads, model.slices.values(), lr=float(trainer.schedule.lr(0))
        )

    for i in range(warmup):  # buffers, page faults, kernel compilation
        step(i)
    B.synchronize()
    timers = _Timers(model, None if predict else trainer, sync)
    gather[0] = 0.0
    try:
        t0 = time.perf_counter()
        for i in range(iterations):
            step(warmup + i)
        B.synchronize()
        wall = time.perf_counter() - t0
    finally:
        timers.remove()
    s = timers.seconds
    nodes = [
        {
            "name": e.name,
            "type": type(e.node.layer).__name__,
            "forward": s[(i, "forward")],
            "backward": 0.0 if predict else s[(i, "backward")],
        }
        for i, e in enumerate(model.entries())
    ]
    parts = {"batch": gather[0]}
    if not predict:
        parts.update(loss=s.get("loss", 0.0), optimizer=s.get("optimizer", 0.0))
        if regularized:
            parts["regularization"] = s.get("regularization", 0.0)
    return Profile(len(batch_fn(0)[0]), iterations, wall, nodes, parts)


def synthetic_batch(model, task: str, batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random inputs of the model's input shape and targets of the form ``task`` wants (one-hot, ids, 0/1, values).

    Integer inputs (token ids) stay below the vocabulary of the Embedding that reads them."""
    if isinstance(model.output_shape, list):
        raise SpecError("nnctl time: the model has several outputs; it needs one output to take a loss")
    rng = np.random.default_rng(seed)
    shape = (batch, *model.input_shape)
    if model.input_dtype.kind in "iu":
        vocab = min(
            (
                int(getattr(n.layer, "input_dim", 0) or 0)
                for n in model.nodes
                if (INPUT, None) in n.refs and getattr(n.layer, "input_dim", None)
            ),
            default=2,
        )
        x = rng.integers(0, max(vocab, 1), shape).astype(model.input_dtype)
    else:
        x = rng.standard_normal(shape).astype(model.input_dtype)
    out = tuple(model.output_shape)
    if task == "sparse":
        y = rng.integers(0, out[-1], (batch, *out[:-1])).astype(np.int64)
    elif task == "categorical":
        y = np.eye(out[-1], dtype=model.dtype)[rng.integers(0, out[-1], (batch, *out[:-1]))]
    elif task == "binary":
        y = rng.integers(0, 2, (batch, *out)).astype(model.dtype)
    else:
        y = rng.standard_normal((batch, *out)).astype(model.dtype)
    return x, y


def time_model(model, trainer, batch: int, iterations: int, warmup: int = 3, seed: int = 0) -> dict:
    """``profile`` on one synthetic batch of ``batch`` samples, as milliseconds per step (``Profile.to_dict``)."""
    x, y = synthetic_batch(model, trainer.task, batch, seed)
    return profile(model, trainer, lambda i: (x, y), iterations, warmup).to_dict()
