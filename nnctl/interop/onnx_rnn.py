"""ONNX converters for SimpleRNN, LSTM, GRU and Bidirectional: the time loop unrolled over the model's T steps.

Unrolling writes nnctl's own recurrence (Keras gate orders, GRU's reset_after, any elementwise
activation, go_backwards' reversed output order) and its masking rule exactly: a masked step keeps the
previous state and outputs zeros. ONNX's fused LSTM/GRU operators have other gate orders and express a
mask only as trailing sequence lengths, so they would not give the same numbers for every model.
"""

from __future__ import annotations

from nnctl.interop.onnx_activations import activation
from nnctl.interop.onnx_graph import ONNX_DTYPES, Graph, converts


def _zeros(g: Graph, x: str, units: int) -> str:
    """(N, units) zeros, N taken from x at run time (the batch axis is dynamic)."""
    n = g.slice(g.op("Shape", [x]), [0], [1], [0])
    shape = g.op("Concat", [n, g.ints([units])], axis=0)
    from onnx import helper

    return g.op("ConstantOfShape", [shape], value=helper.make_tensor("zero", ONNX_DTYPES[g.dtype], [1], [0]))


def recurrence(g: Graph, layer, p: dict, x: str, mask: str | None, h0: str | None, c0: str | None):
    """Unrolled forward of one RNN layer: (per-step outputs in processing order, h_T, c_T or None)."""
    cell, U = layer.cell, layer.units
    T = layer.input_shapes[0][0]
    act, rec = cell.act.name, cell.rec.name
    bias = p.get("bias")
    b_in, b_rec = (bias[0], bias[1]) if bias is not None and cell.split_bias else (bias, None)
    Z = g.op("MatMul", [x, g.const(p["kernel"], "kernel")])  # (N, T, G*U), every step at once
    if b_in is not None:
        Z = g.op("Add", [Z, g.const(b_in, "bias")])
    R = g.const(p["recurrent_kernel"], "recurrent_kernel")
    brec = None if b_rec is None else g.const(b_rec, "recurrent_bias")
    h = h0 if h0 is not None else _zeros(g, x, U)
    c = None
    if cell.n_states == 2:
        c = c0 if c0 is not None else _zeros(g, x, U)
    outs = []
    for s in range(T):
        t = T - 1 - s if layer.go_backwards else s
        z = g.op("Gather", [Z, g.ints(t, "step")], axis=1)  # (N, G*U)
        hr = g.op("MatMul", [h, R])
        if cell.G == 1:
            h_new = activation(g, act, g.op("Add", [z, hr]))
            c_new = None
        elif cell.n_states == 2:  # LSTM, gates i, f, c, o
            zi, zf, zc, zo = g.split(g.op("Add", [z, hr]), [U] * 4, axis=1)
            i, f, o = activation(g, rec, zi), activation(g, rec, zf), activation(g, rec, zo)
            c_new = g.op("Add", [g.op("Mul", [f, c]), g.op("Mul", [i, activation(g, act, zc)])])
            h_new = g.op("Mul", [o, activation(g, act, c_new)])
        else:  # GRU, gates z, r, h, reset after the recurrent product
            if brec is not None:
                hr = g.op("Add", [hr, brec])
            xz, xr, xh = g.split(z, [U] * 3, axis=1)
            rz, rr, rh = g.split(hr, [U] * 3, axis=1)
            zg, r = activation(g, rec, g.op("Add", [xz, rz])), activation(g, rec, g.op("Add", [xr, rr]))
            hh = activation(g, act, g.op("Add", [xh, g.op("Mul", [r, rh])]))
            h_new = g.op("Add", [g.op("Mul", [g.op("Sub", [h, hh]), zg]), hh])
            c_new = None
        out = h_new
        if mask is not None:  # a padded step carries the state through and outputs zeros
            m = g.unsqueeze(g.op("Gather", [mask, g.ints(t, "step")], axis=1), [1])  # (N, 1)
            h_new = g.op("Where", [m, h_new, h])
            if c_new is not None:
                c_new = g.op("Where", [m, c_new, c])
            out = g.op("Where", [m, out, g.const(0.0)])
        h, c = h_new, c_new
        outs.append(out)
    return outs, h, c


def _stack(g: Graph, steps: list[str]) -> str:
    return g.op("Concat", [g.unsqueeze(s, [1]) for s in steps], axis=1)  # (N, T, U)


@converts("SimpleRNN", "LSTM", "GRU")
def _rnn(g, layer, ins, masks, p):
    outs, h, c = recurrence(g, layer, p, ins[0], masks[0], *(list(ins[1:]) + [None, None])[:2])
    y = _stack(g, outs) if layer.return_sequences else h
    if not layer.return_state:
        return y
    return [y, h] + ([c] if c is not None else [])


@converts("Bidirectional")
def _bidirectional(g, layer, ins, masks, p):
    fwd = layer.forward_layer
    k = fwd.cell.n_states
    results = []
    for (prefix, sub), states in zip(layer._subs, (ins[1 : 1 + k], ins[1 + k :])):
        sub_p = {name[len(prefix) :]: v for name, v in p.items() if name.startswith(prefix)}
        sub.input_shapes = layer.input_shapes[:1]
        results.append(recurrence(g, sub, sub_p, ins[0], masks[0], *(list(states) + [None, None])[:2]))
    (of, hf, cf), (ob, hb, cb) = results
    if fwd.return_sequences:  # the backward layer's steps, flipped back to input order
        yf, yb = _stack(g, of), _stack(g, ob[::-1])
    else:
        yf, yb = hf, hb
    mode = layer.merge_mode
    states = ([hf] + ([cf] if cf else []) + [hb] + ([cb] if cb else [])) if fwd.return_state else []
    if mode is None:
        return [yf, yb, *states]
    if mode == "concat":
        y = g.op("Concat", [yf, yb], axis=-1)
    elif mode == "mul":
        y = g.op("Mul", [yf, yb])
    else:
        y = g.op("Add", [yf, yb])
        if mode == "ave":
            y = g.op("Mul", [y, g.const(0.5)])
    return [y, *states] if states else y
