"""The model: an ordered list of named nodes built from the layer registry, with shapes inferred.

A node without ``inputs`` takes the previous node's output; ``inputs`` may name the model input
(``"input"``, or one of several named inputs, ``model.inputs``), any earlier node, or one output of a
multi-output node (``"encoder:1"``). List order is therefore the topological order. A layer entry with
``activation = "relu"`` (Dense, convolutions) is two nodes: the layer, named ``<entry>/linear``, then an
Activation node named after the entry, so every reference to the entry reads the activated output; the
layer keeps the entry's name, and its parameters are named by it (``dense/kernel``). A model with
named outputs (``model.outputs``) returns ``{node: output}`` from ``forward`` and takes
``{node: gradient}`` in ``backward_many``; without, it returns its last node's output. Backward walks
the list in reverse and sums gradients where one output feeds several nodes.

All trainable parameters live in one contiguous buffer (``flat_params``) and their gradients in
another (``flat_grads``); each layer's ``params``/``grads`` entries are views into them. The
optimizer then updates every parameter with a few whole-buffer operations, and a data-parallel run
exchanges gradients in one allreduce of ``flat_grads``.

Fusions are decided once, when the model is built (``_fuse``), over adjacent nodes: an inference ReLU
that may overwrite its input's fresh output, and the output activations whose input (the logits) the
forward pass keeps for a loss that fuses with them (softmax or sigmoid with cross-entropy): such a loss
seeds its gradient at ``logits_node``, and backward never differentiates the activation; and, in
training, a ReLU node whose input is a convolution's output that only it reads: the convolution applies
the ReLU as it writes its output and its derivative as it reads the gradient (``relu_fused``), and the
ReLU node passes its input and gradient through.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from nnctl import backend as B
from nnctl import threads
from nnctl.errors import DataError
from nnctl.layers.base import BuildContext, Layer
from nnctl.layers.core import Activation
from nnctl.rowshare import RowShare

INPUT = "input"
_FUSED = object()  # the cache of a ReLU node whose convolution applied it (training, Model._fuse)


@dataclass
class Node:
    name: str
    layer: Layer
    refs: list[tuple[str, int | None]]  # (node name, output index or None for the whole output)
    output_shape: Any = None  # a tuple, or a list of tuples for several outputs
    spec: dict = field(default_factory=dict)
    index: int = 0  # the position of its entry in model.layers (its random streams and messages)
    part_of: str | None = None  # an entry's ``activation`` key: the name of the layer node it follows


class Entry(NamedTuple):
    """One spec entry as views show it (summary, FLOPs, timing, Keras export): its layer node and the
    Activation node of its ``activation`` key, if any."""

    name: str
    node: Node
    activation: Node | None


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
        self._kept: dict[str, Any] = {}  # the last forward pass's logits of the output activations
        # each node's own generator, handed to its layer by build; RowShare with share None (plain draws) until a
        # data-parallel strategy sets the shares (strategy.DataParallel)
        self.streams: list[RowShare] = []
        # a layer that cuts its batch into slices: forward and backward hold the slice pool (nnctl/threads.py)
        self._slices = any(n.layer.slices_batch for n in nodes)
        self._fuse()

    # -- building ---------------------------------------------------------------------------
    def build(self, seed: int) -> None:
        """Infer every output shape and draw initial weights on the host from ``seed``."""
        init_rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(0,))))
        self.streams = []
        shapes: dict[str, Any] = {k: s for k, (s, _) in self.inputs.items()}
        for node in self.nodes:
            # keyed by the entry, so expanding an entry into two nodes keeps every layer's stream
            key = (1, node.index) if node.part_of is None else (1, node.index, 1)
            stream = RowShare(np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key))))
            self.streams.append(stream)
            ctx = BuildContext(
                rng=stream,
                init_rng=init_rng,
                dtype=self.dtype,
                # the model input needs no gradient (unless asked for): the first layer can skip that product
                input_grads_needed=tuple(name not in self.inputs or self.input_grad for name, _ in node.refs),
                name=node.layer.name,
            )
            node.layer.build([self._pick(shapes[name], idx) for name, idx in node.refs], ctx)
            node.output_shape = shapes[node.name] = node.layer.output_shape
        self.output_shape = self.nodes[-1].output_shape
        self.output_shapes = {name: self.by_name[name].output_shape for name in self.outputs}

    def _fuse(self) -> None:
        """The fusion pass over adjacent nodes (module docstring): which ReLU nodes may run in place at
        inference, and which outputs' logits the forward pass keeps."""
        readers: dict[str, int] = {}
        for n in self.nodes:
            for name, _ in n.refs:
                readers[name] = readers.get(name, 0) + 1
        # an output's activation whose whole input is one node's output: the loss may fuse with it
        self._logits_of: dict[str, str] = {}
        for name in dict.fromkeys([*self.outputs, self.nodes[-1].name]):
            node = self.by_name[name]
            if isinstance(node.layer, Activation) and len(node.refs) == 1 and node.refs[0][1] is None:
                self._logits_of[name] = node.refs[0][0]
        kept = set(self._logits_of.values())
        self._in_place = set()
        for i, n in enumerate(self.nodes):
            src = self.by_name.get(n.refs[0][0]) if len(n.refs) == 1 else None
            if (
                n.layer.in_place_at_inference
                and src is not None
                and n.refs[0][1] is None
                and src.layer.activation_follows  # Dense, convolutions: a fresh output that no cache keeps
                and readers[src.name] == 1
                and src.name not in kept
                and src.name not in self.outputs
            ):
                self._in_place.add(i)
        # in training the same ReLU runs inside a convolution that can fuse it (``relu_fused``)
        self._relu_fused = {
            i for i in self._in_place if hasattr(self.by_name[self.nodes[i].refs[0][0]].layer, "relu_fused")
        }
        for i in self._relu_fused:
            self.by_name[self.nodes[i].refs[0][0]].layer.relu_fused = True  # type: ignore[attr-defined]
        follows = {n.part_of: n for n in self.nodes if n.part_of is not None}
        self._entries = [
            Entry(n.name if n.name not in follows else follows[n.name].name, n, follows.get(n.name))
            for n in self.nodes
            if n.part_of is None
        ]

    def fusions(self) -> dict:
        """What the fusion pass decided: ``{"in_place": [ReLU nodes overwriting their input at inference],
        "logits": {output node: the node whose output a fused loss differentiates}}``."""
        return {"in_place": [self.nodes[i].name for i in sorted(self._in_place)], "logits": dict(self._logits_of)}

    def entries(self) -> list[Entry]:
        """One row per spec entry: its name, its layer node and the Activation node of its ``activation``."""
        return self._entries

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
            self.slices[f"{layer.name}/{k}"] = sl  # a layer is named after its entry, also when split
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
        with threads.held(self._slices):
            return self._forward(x, training, until)

    def _forward(self, x, training: bool, until: str | None):
        outs: dict[str, Any] = dict(x) if self.named_inputs else {INPUT: x}
        masks: dict[str, Any] = dict.fromkeys(outs)
        caches = []
        for i, node in enumerate(self.nodes):
            ins = [self._pick(outs[name], idx) for name, idx in node.refs]
            # a multi-output node's mask belongs to its first output (the sequence), not its states
            in_masks = [masks[name] if idx in (None, 0) else None for name, idx in node.refs]
            mask = in_masks if node.layer.mask_per_input else in_masks[0]
            if not training and i in self._in_place:
                y, cache = node.layer.forward_in_place(ins[0]), None
            elif training and i in self._relu_fused:
                y, cache = ins[0], _FUSED  # its convolution wrote max(., 0)
            else:
                y, cache = node.layer.forward(*ins, training=training, mask=mask)
            masks[node.name] = node.layer.compute_mask(mask, ins)
            outs[node.name] = y
            caches.append(cache)
            if node.name == until:
                break
        self._caches = caches
        self._kept = {name: outs[name] for name in self._logits_of.values() if name in outs}
        if self.named_outputs and until is None:
            return {name: outs[name] for name in self.outputs}
        return outs[until or self.nodes[-1].name]

    def output_activation(self, node: str | None = None) -> str | None:
        """Name of the final elementwise activation (``softmax``, ``sigmoid``...) of the last node or of
        output ``node`` when its logits are kept for a fused loss (``logits``), else None."""
        last = node or self.nodes[-1].name
        return self.by_name[last].layer.activation if last in self._logits_of else None  # type: ignore[attr-defined]

    def logits_node(self, node: str | None = None) -> str:
        """The node whose output is the input of the final activation of the last node or of ``node``: a fused
        loss seeds its gradient there (``backward(at=...)``, ``backward_many``)."""
        return self._logits_of[node or self.nodes[-1].name]

    def logits(self, node: str | None = None):
        """The logits under the final activation (of the last node, or of ``node``) in the last forward pass."""
        return self._kept[self.logits_node(node)]

    def backward(self, grad, at: str | None = None):
        """Backpropagate ``grad``, dL/d(output of node ``at``): the model's output by default, its logits
        for a fused loss (``at=logits_node()``).

        Returns dL/dx for a model built with ``input_grad``, else None."""
        return self.backward_many({at or self.nodes[-1].name: grad})

    def backward_many(self, seeds: dict):
        """Backpropagate ``{node: dL/d output}`` from several nodes at once (an output, or the logits of a
        fused output); gradients where paths meet are summed.

        Returns dL/dx (a dict for named inputs) for a model built with ``input_grad``, else None."""
        with threads.held(self._slices):
            return self._backward_many(seeds)

    def _backward_many(self, seeds: dict):
        grads: dict[str, Any] = dict(seeds)
        for i in range(len(self.nodes) - 1, -1, -1):
            node = self.nodes[i]
            g = grads.pop(node.name, None)
            if g is None:
                continue
            cache = self._caches[i]
            in_grads = (g,) if cache is _FUSED else node.layer.backward(g, cache)
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
        """``{layer/param: array}``: parameters are named by their layer, which is named after its entry."""
        return {
            f"{n.layer.name}/{k}": v
            for n in self.nodes
            for k, v in n.layer.params.items()
            if n.layer.trainable or not trainable_only
        }

    def named_state(self) -> dict[str, Any]:
        return {f"{n.layer.name}/{k}": v for n in self.nodes for k, v in n.layer.state.items()}

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
        """Every entry's layer generator state, by entry name (an ``activation`` key's node draws nothing)."""
        return {e.name: e.node.layer.rng.bit_generator.state for e in self._entries}

    def set_rng_states(self, states: dict[str, dict]) -> None:
        for e in self._entries:
            if e.name in states:
                e.node.layer.rng.bit_generator.state = states[e.name]

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
