"""The model: an ordered list of named nodes built from the layer registry, with shapes inferred.

A node without ``inputs`` takes the previous node's output; ``inputs`` may name the model input
(``"input"``, or one of several named inputs, ``model.inputs``), any earlier node, or one output of a
multi-output node (``"encoder:1"``). List order is therefore the topological order. A model with
named outputs (``model.outputs``) returns ``{node: output}`` from ``forward`` and takes
``{node: gradient}`` in ``backward_many``; without, it returns its last node's output. Backward walks the list in reverse and sums gradients where one
output feeds several nodes.

All trainable parameters live in one contiguous buffer (``flat_params``) and their gradients in
another (``flat_grads``); each layer's ``params``/``grads`` entries are views into them. The
optimizer then updates every parameter with a few whole-buffer operations, and a data-parallel run
exchanges gradients in one allreduce of ``flat_grads``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnctl import backend as B
from nnctl.errors import DataError
from nnctl.layers.base import Layer
from nnctl.layers.core import Activation

INPUT = "input"


@dataclass
class Node:
    name: str
    layer: Layer
    refs: list[tuple[str, int | None]]  # (node name, output index or None for the whole output)
    activation: Activation | None = None
    output_shape: Any = None  # a tuple, or a list of tuples for several outputs
    spec: dict = field(default_factory=dict)


def parse_ref(ref: str) -> tuple[str, int | None]:
    name, _, idx = str(ref).partition(":")
    return name, (int(idx) if idx.isdigit() else None)


class Model:
    """A built network: ``forward(x)`` -> predictions, ``backward(dy)`` -> parameter gradients."""

    def __init__(
        self,
        nodes: list[Node],
        input_shape: tuple,
        dtype=np.float32,
        input_dtype=None,
        input_grad: bool = False,
        inputs: dict | None = None,
        outputs: list[str] | None = None,
    ):
        self.nodes = nodes
        self.input_grad = input_grad  # backward returns dL/dx (a GAN's discriminator passes it to the generator)
        self.input_shape = tuple(input_shape)
        self.dtype = np.dtype(dtype)
        self.input_dtype = np.dtype(input_dtype or dtype)
        # named inputs: name -> (shape, dtype); one unnamed input is {"input": (input_shape, input_dtype)}
        self.named_inputs = inputs is not None
        self.inputs = (
            {k: (tuple(s), np.dtype(d or dtype)) for k, (s, d) in inputs.items()}
            if inputs
            else {INPUT: (self.input_shape, self.input_dtype)}
        )
        self.named_outputs = outputs is not None
        self.outputs = list(outputs) if outputs else [nodes[-1].name]  # node names, in the spec's order
        self.by_name = {n.name: n for n in nodes}
        self.flat_params: Any = None  # (P,) every parameter, one buffer (set by build)
        self.flat_grads: Any = None  # (P,) their gradients, the same layout
        self._caches: list = []

    # -- building ---------------------------------------------------------------------------
    def build(self, seed: int) -> None:
        """Infer every output shape and draw initial weights on the host from ``seed``."""
        init_rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(0,))))
        shapes: dict[str, Any] = {k: s for k, (s, _) in self.inputs.items()}
        for i, node in enumerate(self.nodes):
            layer = node.layer
            layer.dtype = self.dtype
            layer.rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(1, i))))
            in_shapes = [self._pick(shapes[name], idx) for name, idx in node.refs]
            layer.input_shapes = in_shapes
            # the model input needs no gradient (unless asked for): the first layer can skip that product
            layer.input_grads_needed = tuple(name not in self.inputs or self.input_grad for name, _ in node.refs)
            out = layer.build(in_shapes, init_rng)
            node.output_shape = layer.output_shape = out if isinstance(out, list) else tuple(int(d) for d in out)
            shapes[node.name] = node.output_shape
        self.output_shape = self.nodes[-1].output_shape
        self.output_shapes = {name: self.by_name[name].output_shape for name in self.outputs}

    @staticmethod
    def _pick(value, idx):
        return value if idx is None else value[idx]

    def to_device(self) -> None:
        """Pack trainable parameters into one flat buffer on the active device; layers keep views."""
        xp = B.xp
        trainable = [(n.layer, k) for n in self.nodes if n.layer.trainable for k in n.layer.params]
        sizes = [n.layer.params[k].size for n in self.nodes if n.layer.trainable for k in n.layer.params]
        total = int(sum(sizes))
        self.flat_params = xp.zeros(total, dtype=self.dtype)
        self.flat_grads = xp.zeros(total, dtype=self.dtype)
        self.slices: dict[str, slice] = {}
        off = 0
        for (layer, k), size in zip(trainable, sizes):
            host = layer.params[k]
            sl = slice(off, off + size)
            self.flat_params[sl] = B.asarray(host.ravel())
            layer.params[k] = self.flat_params[sl].reshape(host.shape)
            layer.grads[k] = self.flat_grads[sl].reshape(host.shape)
            self.slices[f"{layer.name}/{k}"] = sl
            off += size
        for n in self.nodes:
            layer = n.layer
            if not layer.trainable:
                for k, v in layer.params.items():
                    layer.params[k] = B.asarray(v)
                    layer.grads[k] = xp.zeros(v.shape, dtype=self.dtype)
            for k, v in layer.state.items():
                layer.state[k] = B.asarray(v)

    # -- running ----------------------------------------------------------------------------
    def forward(self, x, training: bool = False, until: str | None = None):
        """Run every node, or the nodes up to and including ``until``; returns the last one's output (its
        activation applied), or ``{node: output}`` of a model with named outputs.

        ``x`` is one array, or ``{input name: array}`` for named inputs."""
        outs: dict[str, Any] = dict(x) if self.named_inputs else {INPUT: x}
        masks: dict[str, Any] = dict.fromkeys(outs)
        caches = []
        for node in self.nodes:
            ins = [self._pick(outs[name], idx) for name, idx in node.refs]
            # a multi-output node's mask belongs to its first output (the sequence), not its states
            in_masks = [masks[name] if idx in (None, 0) else None for name, idx in node.refs]
            mask = in_masks if node.layer.mask_per_input else in_masks[0]
            y, cache = node.layer.forward(*ins, training=training, mask=mask)
            masks[node.name] = node.layer.compute_mask(mask, ins)
            act_cache = None
            if node.activation is not None and not training and node.activation.activation == "relu":
                B.xp.maximum(y, 0, out=y)  # inference keeps no pre-activation: ReLU in place on the fresh output
            elif node.activation is not None:
                y, act_cache = node.activation.forward(y)
            outs[node.name] = y
            caches.append((cache, act_cache))
            if node.name == until:
                break
        self._caches = caches
        if self.named_outputs and until is None:
            return {name: outs[name] for name in self.outputs}
        return outs[until or self.nodes[-1].name]

    def output_activation(self, node: str | None = None) -> str | None:
        """Name of the final elementwise activation (``softmax``, ``sigmoid``...) of the last node or of
        output ``node``, for fused losses."""
        last = self.by_name[node] if node else self.nodes[-1]
        if last.activation is not None:
            return last.activation.activation
        if isinstance(last.layer, Activation):
            return last.layer.activation
        return None

    def logits(self, node: str | None = None):
        """Input of the final activation (of the last node, or of ``node``) in the last forward pass (the
        logits for softmax/sigmoid)."""
        i = self.nodes.index(self.by_name[node]) if node else len(self.nodes) - 1
        cache, act_cache = self._caches[i]
        return act_cache[0] if self.nodes[i].activation is not None else cache[0]

    def backward(self, grad, skip_output_activation: bool = False):
        """Backpropagate ``grad`` (w.r.t. the output, or the logits when skipping the activation).

        Returns dL/dx for a model built with ``input_grad``, else None."""
        last = self.nodes[-1].name
        return self.backward_many({last: grad}, {last} if skip_output_activation else set())

    def backward_many(self, seeds: dict, skip: set):
        """Backpropagate ``{node: dL/d output}`` from several outputs at once (dL/d logits for the nodes in
        ``skip``, whose activation is then not differentiated); gradients where paths meet are summed.

        Returns dL/dx (a dict for named inputs) for a model built with ``input_grad``, else None."""
        grads: dict[str, Any] = dict(seeds)
        for i in range(len(self.nodes) - 1, -1, -1):
            node = self.nodes[i]
            g = grads.pop(node.name, None)
            if g is None:
                continue
            cache, act_cache = self._caches[i]
            skip_act = node.name in skip
            if node.activation is not None and not skip_act:
                g = node.activation.backward(g, act_cache)[0]
            if isinstance(node.layer, Activation) and skip_act:
                in_grads = (g,)
            else:
                in_grads = node.layer.backward(g, cache)
            for (name, idx), gi in zip(node.refs, in_grads):
                if gi is None or (name in self.inputs and not self.input_grad):
                    continue
                self._accumulate(grads, name, idx, gi)
        self._caches = []
        if self.named_inputs:
            return {k: grads[k] for k in self.inputs if k in grads} if self.input_grad else None
        return grads.get(INPUT)

    def _accumulate(self, grads, name, idx, g):
        if idx is None:
            grads[name] = g if name not in grads else grads[name] + g
            return
        n_out = len(self.by_name[name].output_shape)
        slot = grads.setdefault(name, [None] * n_out)
        slot[idx] = g if slot[idx] is None else slot[idx] + g

    # -- parameters ---------------------------------------------------------------------------
    def named_params(self, trainable_only: bool = False) -> dict[str, Any]:
        return {
            f"{n.name}/{k}": v
            for n in self.nodes
            for k, v in n.layer.params.items()
            if n.layer.trainable or not trainable_only
        }

    def named_state(self) -> dict[str, Any]:
        return {f"{n.name}/{k}": v for n in self.nodes for k, v in n.layer.state.items()}

    def regularization(self, add_grads: bool) -> float:
        """L1/L2 penalty sum_l (l1*|w| + l2*w^2) over regularised parameters; adds its gradient if asked."""
        xp = B.xp
        total = 0.0
        for n in self.nodes:
            if not n.layer.trainable:
                continue
            for k, w in n.layer.params.items():
                reg = n.layer.regularizer(k)
                if not reg:
                    continue
                l1, l2 = float(reg.get("l1", 0.0)), float(reg.get("l2", 0.0))
                if l2:
                    total = total + l2 * xp.sum(w * w)
                    if add_grads:
                        n.layer.grads[k] += (2 * l2) * w
                if l1:
                    total = total + l1 * xp.sum(xp.abs(w))
                    if add_grads:
                        n.layer.grads[k] += l1 * xp.sign(w)
        return total

    def has_regularization(self) -> bool:
        return any(n.layer.trainable and n.layer.regularizer(k) for n in self.nodes for k in n.layer.params)

    def rng_states(self) -> dict[str, dict]:
        return {n.name: n.layer.rng.bit_generator.state for n in self.nodes}

    def set_rng_states(self, states: dict[str, dict]) -> None:
        for n in self.nodes:
            if n.name in states:
                n.layer.rng.bit_generator.state = states[n.name]

    def param_count(self) -> tuple[int, int]:
        """(trainable, non-trainable): frozen layers' parameters and every layer's state are non-trainable."""
        total = sum(n.layer.param_count() for n in self.nodes)
        trainable = sum(int(np.prod(p.shape)) for n in self.nodes if n.layer.trainable for p in n.layer.params.values())
        return trainable, total - trainable

    def check_input(self, x: np.ndarray, source: str) -> None:
        """DataError naming ``source`` and the sample when host data ``x`` does not suit a layer that reads
        the model input (token ids outside an Embedding's table): once per dataset, not per batch."""
        named = x if self.named_inputs else {INPUT: x}
        for node in self.nodes:
            for name in self.inputs:
                problem = (name, None) in node.refs and node.layer.check_input(named[name])
                if problem:
                    raise DataError(f"{source}: {'' if name == INPUT else f'input {name!r}: '}{problem}")

    def predict(self, x, batch_size: int = 1024, until: str | None = None, on_batch=None):
        """Inference in batches; x is a host array (``{name: array}`` for named inputs), the result a host
        array (or list for multi-output, ``{node: array}`` for named outputs); ``until`` names a node whose
        output is returned instead of the model's; ``on_batch(done, total)`` follows the rows."""
        n = rows(x)
        named = self.named_outputs and until is None
        outs: list = []
        for start in range(0, n, batch_size):
            y = self.forward(self.device_inputs(take(x, slice(start, start + batch_size))), training=False, until=until)
            outs.append({k: B.to_numpy(v) for k, v in y.items()} if named else B.to_numpy(y))
            self._caches = []
            if on_batch is not None:
                on_batch(min(start + batch_size, n), n)
        if named:
            return {
                k: np.concatenate([o[k] for o in outs])
                if outs
                else np.zeros((0, *self.output_shapes[k]), dtype=self.dtype)
                for k in self.outputs
            }
        if not outs:
            shape = self.by_name[until].output_shape if until else self.output_shape
            return np.zeros((0, *shape), dtype=self.dtype)
        return np.concatenate(outs, axis=0)

    def device_inputs(self, xb):
        """A host batch on the device in each input's dtype (``{name: array}`` for named inputs)."""
        if self.named_inputs:
            return {k: B.asarray(xb[k], dtype=dt) for k, (_, dt) in self.inputs.items()}
        return B.asarray(xb, dtype=self.input_dtype)


def rows(x) -> int:
    """Rows of one array, or of ``{name: array}`` (all of one length)."""
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def take(x, idx):
    """Rows ``idx`` (a slice or indices) of one array, or of each array of ``{name: array}``."""
    return {k: v[idx] for k, v in x.items()} if isinstance(x, dict) else x[idx]
