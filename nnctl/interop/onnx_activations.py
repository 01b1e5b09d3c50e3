"""ONNX forms of nnctl's activations (``activation = "..."`` on a layer) and of the activation layers.

Each writes the same maths as nnctl/ops/activations.py: gelu in its exact erf form, gelu_tanh the tanh
approximation, hard_sigmoid as Keras 3's relu6(x + 3) / 6, selu with Keras's constants.
"""

from __future__ import annotations

import math

from nnctl.interop.onnx_graph import ONNX_DTYPES, Graph, Unsupported, converts
from nnctl.ops.activation_fns import SELU_ALPHA, SELU_SCALE
from nnctl.ops.activations import canonical


def activation(g: Graph, name: str | None, x: str, alpha: float | None = None) -> str:
    """y = f(x) for an nnctl activation name, written with ONNX operators."""
    if name is None:
        return x
    n = canonical(name)
    simple = {
        "relu": "Relu",
        "sigmoid": "Sigmoid",
        "tanh": "Tanh",
        "softplus": "Softplus",
        "softsign": "Softsign",
        "exponential": "Exp",
        "arctan": "Atan",
    }
    if n == "linear":
        return x
    if n in simple:
        return g.op(simple[n], [x])
    if n == "softmax":
        return g.op("Softmax", [x], axis=-1)
    if n == "log_softmax":
        return g.op("LogSoftmax", [x], axis=-1)
    if n == "leaky_relu":
        return g.op("LeakyRelu", [x], alpha=float(0.2 if alpha is None else alpha))
    if n == "elu":
        return g.op("Elu", [x], alpha=float(1.0 if alpha is None else alpha))
    if n == "selu":
        return g.op("Selu", [x], alpha=SELU_ALPHA, gamma=SELU_SCALE)
    if n in ("swish", "silu"):
        return g.op("Mul", [x, g.op("Sigmoid", [x])])
    if n == "relu6":
        return g.op("Clip", [x, g.const(0.0, "lo"), g.const(6.0, "hi")])
    if n == "hard_sigmoid":
        return g.op("HardSigmoid", [x], alpha=1 / 6, beta=0.5)
    if n in ("hard_silu", "hard_swish"):
        return g.op("Mul", [x, g.op("HardSigmoid", [x], alpha=1 / 6, beta=0.5)])
    if n == "mish":
        return g.op("Mul", [x, g.op("Tanh", [g.op("Softplus", [x])])])
    if n == "gelu":  # exact form: 0.5 x (1 + erf(x / sqrt 2))
        e = g.op("Erf", [g.op("Mul", [x, g.const(1 / math.sqrt(2))])])
        return g.op("Mul", [g.op("Mul", [x, g.const(0.5)]), g.op("Add", [e, g.const(1.0)])])
    if n == "gelu_tanh":
        cube = g.op("Mul", [g.op("Mul", [x, x]), x])
        inner = g.op("Add", [x, g.op("Mul", [cube, g.const(0.044715)])])
        t = g.op("Tanh", [g.op("Mul", [inner, g.const(math.sqrt(2 / math.pi))])])
        return g.op("Mul", [g.op("Mul", [x, g.const(0.5)]), g.op("Add", [t, g.const(1.0)])])
    if n == "step":
        return g.op("Cast", [g.op("GreaterOrEqual", [x, g.const(0.0)])], to=onnx_type(g))
    raise Unsupported(f"activation {name!r} has no ONNX form here")


def onnx_type(g: Graph) -> int:
    """The ONNX element type of the model dtype."""
    return ONNX_DTYPES[g.dtype]


@converts("Activation")
def _activation(g, layer, ins, masks, p):
    return activation(g, layer.activation, ins[0], layer.alpha)


@converts("ReLU")
def _relu(g, layer, ins, masks, p):
    x = ins[0]
    shifted = g.op("Mul", [g.op("Sub", [x, g.const(layer.threshold)]), g.const(layer.negative_slope)])
    y = g.op("Where", [g.op("Less", [x, g.const(layer.threshold)]), shifted, x])
    return y if layer.max_value is None else g.op("Min", [y, g.const(layer.max_value)])


@converts("LeakyReLU")
def _leaky(g, layer, ins, masks, p):
    return g.op("LeakyRelu", [ins[0]], alpha=float(layer.negative_slope))


@converts("ELU")
def _elu(g, layer, ins, masks, p):
    return g.op("Elu", [ins[0]], alpha=float(layer.alpha))


@converts("Softmax")
def _softmax(g, layer, ins, masks, p):
    return g.op("Softmax", [ins[0]], axis=layer.axis)  # both count the batch axis


@converts("PReLU")
def _prelu(g, layer, ins, masks, p):
    return g.op("PRelu", [ins[0], g.const(p["alpha"], "alpha")])
