"""A small builder over ``onnx.helper``: named constants and nodes, unique tensor names, opset-aware ops.

Tensors keep nnctl's layouts (NHWC images, NTC sequences); the converters transpose around the
few ONNX operators that want channels first (Conv, pooling).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

ONNX_DTYPES = {
    np.dtype(np.float32): onnx.TensorProto.FLOAT,
    np.dtype(np.float64): onnx.TensorProto.DOUBLE,
    np.dtype(np.int64): onnx.TensorProto.INT64,
    np.dtype(np.bool_): onnx.TensorProto.BOOL,
}


#: layer type name -> converter ``convert(g, layer, ins, masks, params)`` (nnctl/interop/onnx_layers.py)
CONVERTERS: dict = {}


def converts(*type_names: str):
    """Register the decorated function as the ONNX converter of these layer types."""

    def deco(fn):
        for name in type_names:
            CONVERTERS[name] = fn
        return fn

    return deco


class Unsupported(Exception):
    """A layer (or a use of it) that ONNX cannot express exactly; the message says why."""


class Graph:
    """Nodes and initializers of one ONNX graph, with ``opset`` deciding the spelling of a few ops."""

    def __init__(self, opset: int, dtype):
        self.opset = opset
        self.dtype = np.dtype(dtype)
        self.nodes: list = []
        self.inits: list = []
        self._count: dict[str, int] = {}
        self.scope = "x"

    def fresh(self, hint: str) -> str:
        base = f"{self.scope}/{hint}"
        n = self._count.get(base, 0)
        self._count[base] = n + 1
        return base if n == 0 else f"{base}_{n}"

    def const(self, value, hint: str = "const", dtype=None) -> str:
        """An initializer holding ``value`` (in the model dtype unless ``dtype`` says otherwise)."""
        arr = np.asarray(value)
        arr = arr.astype(dtype if dtype is not None else (self.dtype if arr.dtype.kind == "f" else arr.dtype))
        name = self.fresh(hint)
        self.inits.append(numpy_helper.from_array(np.array(arr, order="C"), name))  # keeps 0-d scalars 0-d
        return name

    def ints(self, values, hint: str = "shape") -> str:
        return self.const(np.asarray(values, dtype=np.int64), hint, np.int64)

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, outputs: int = 1, **attrs):
        """Append one node; returns its output name (or the list of them when ``outputs`` > 1)."""
        outs = [self.fresh(hint or op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=outs[0], **attrs))
        return outs[0] if outputs == 1 else outs

    # -- ops whose form changed between opsets -----------------------------------------------------
    def reduce(self, op_type: str, x: str, axes, keepdims: bool = True) -> str:
        """ReduceMean/Max/Sum over ``axes``: an attribute before opset 18 (13 for ReduceSum), an input after."""
        as_input = self.opset >= (13 if op_type == "ReduceSum" else 18)
        if as_input:
            return self.op(op_type, [x, self.ints(list(axes), "axes")], keepdims=int(keepdims))
        return self.op(op_type, [x], axes=list(axes), keepdims=int(keepdims))

    def slice(self, x: str, starts, ends, axes) -> str:
        return self.op("Slice", [x, self.ints(starts, "starts"), self.ints(ends, "ends"), self.ints(axes, "axes")])

    def unsqueeze(self, x: str, axes) -> str:
        return self.op("Unsqueeze", [x, self.ints(list(axes), "axes")])

    def squeeze(self, x: str, axes) -> str:
        return self.op("Squeeze", [x, self.ints(list(axes), "axes")])

    def reshape(self, x: str, shape) -> str:
        """Reshape keeping the batch axis: ``shape`` without it (0 copies the batch size)."""
        return self.op("Reshape", [x, self.ints([0, *shape])])

    def transpose(self, x: str, perm) -> str:
        return self.op("Transpose", [x], perm=list(perm))

    def split(self, x: str, sizes, axis: int) -> list[str]:
        return self.op("Split", [x, self.ints(list(sizes), "split")], outputs=len(sizes), axis=axis)

    def model(self, inputs: list, outputs: list, doc: str, metadata: dict[str, str]) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, "nnctl", inputs, outputs, self.inits)
        model = helper.make_model(
            graph, producer_name="nnctl", doc_string=doc, opset_imports=[helper.make_opsetid("", self.opset)]
        )
        model.ir_version = min(model.ir_version, 8 if self.opset <= 17 else 9)  # readable by older runtimes
        for key, value in metadata.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        return model
