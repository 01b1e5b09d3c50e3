"""Recurrent layers: SimpleRNN, LSTM, GRU (one shared time loop, nnctl/layers/rnn_cells.py) and Bidirectional.

Inputs are (N, T, F); the output is the last state (N, units), or every step (N, T, units) with
``return_sequences``. Weights follow Keras, so they copy across unchanged:

- ``kernel`` (F, G*units), ``recurrent_kernel`` (units, G*units), ``bias`` (G*units,), gate blocks
  side by side in the last axis:
  - SimpleRNN (G=1): h_t = act(x_t W + h_{t-1} R + b).
  - LSTM (G=4), order **i, f, c, o** (PyTorch's i, f, g, o is the same order): i, f, o = rec_act(...),
    g = act(...), c_t = f c_{t-1} + i g, h_t = o act(c_t). To PyTorch: weight_ih = kernel.T,
    weight_hh = recurrent_kernel.T, bias_ih = bias, bias_hh = 0.
  - GRU (G=3), order **z, r, h** with Keras's reset_after=True; ``bias`` is (2, 3*units): row 0 the
    input bias, row 1 the recurrent bias. z, r = rec_act(x W + b0 + h R + b1) (per block),
    hh = act(x W_h + b0_h + r * (h R_h + b1_h)), h_t = z h_{t-1} + (1 - z) hh. PyTorch orders its
    blocks r, z, n and uses h_t = (1 - z) n + z h: permute the blocks (z, r, h) -> (r, z, n), then
    weight_ih = kernel.T, weight_hh = recurrent_kernel.T, bias_ih = bias[0], bias_hh = bias[1].

Initial state: inputs after the first are h_0 (and c_0 for LSTM), each (N, units), e.g.
``inputs: [dec_embedding, "encoder:1", "encoder:2"]``; absent, the state starts at zero.
``return_state`` makes the layer multi-output: [output, h_T] (SimpleRNN, GRU) or [output, h_T, c_T].

Masks (N, T), True = real step: a masked step keeps the previous state and, with return_sequences,
outputs **zeros** (Keras carries the previous output instead); padding never changes real outputs.
``go_backwards`` reads the sequence from the end and returns the sequence in that (reversed) order.
``dropout`` drops input features in training with one (N, F) mask for every step, as Keras does.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np

from nnctl import backend as B
from nnctl import initializers
from nnctl.fields import Choices, PositiveInt, Rate
from nnctl.initializers import InitializerName
from nnctl.layers.base import LAYERS, Layer, layer_class, register
from nnctl.layers.rnn_cells import Cell, GRUCell, LSTMCell, SimpleRNNCell, Tape, run, run_back
from nnctl.ops.activations import ActivationName


class RNN(Layer):
    """Shared recurrent layer: builds Keras-layout weights, runs its ``cell`` over time (see module doc)."""

    cell_class: type[Cell] = SimpleRNNCell

    def __init__(
        self,
        units: PositiveInt,
        activation: ActivationName = "tanh",
        use_bias: bool = True,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        dropout: Rate = 0.0,
        kernel_initializer: InitializerName = "glorot_uniform",
        recurrent_initializer: InitializerName = "orthogonal",
        bias_initializer: InitializerName = "zeros",
        **kw,
    ):
        super().__init__(**kw)
        if int(units) < 1:
            raise ValueError(f"units must be a positive integer, found {units}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), found {dropout}")
        self.units, self.activation, self.use_bias = int(units), activation, use_bias
        self.return_sequences, self.return_state, self.go_backwards = return_sequences, return_state, go_backwards
        self.dropout = dropout
        self.kernel_initializer, self.recurrent_initializer = kernel_initializer, recurrent_initializer
        self.bias_initializer = bias_initializer
        self.cell = self.cell_class(self.units, activation, getattr(self, "recurrent_activation", "sigmoid"))
        self._pool: list = []  # spare tape buffers (rnn_cells.Tape)

    def _bias(self, rng):
        G, U = self.cell.G, self.units
        shape = (2, G * U) if self.cell.split_bias else (G * U,)
        return initializers.initialize(self.bias_initializer, shape, rng)

    def build(self, input_shapes, ctx):
        name, U, G = type(self).__name__, self.units, self.cell.G
        shape = tuple(input_shapes[0])
        if len(shape) != 2 or min(shape) < 1:
            raise ValueError(f"{name} expects inputs of shape (timesteps, features), found {list(shape)}")
        n_init = len(input_shapes) - 1
        if n_init not in (0, self.cell.n_states):
            raise ValueError(
                f"{name} takes 0 or {self.cell.n_states} initial-state inputs after the sequence, found {n_init}"
            )
        for s in input_shapes[1:]:
            if tuple(s) != (U,):
                raise ValueError(f"{name} initial states must have shape [{U}], found {list(s)}")
        self.add_param("kernel", initializers.initialize(self.kernel_initializer, (shape[1], G * U), ctx.init_rng))
        # orthogonal draws can come back Fortran-ordered: keep every parameter C-contiguous
        R = initializers.initialize(self.recurrent_initializer, (U, G * U), ctx.init_rng)
        self.add_param("recurrent_kernel", np.ascontiguousarray(R))
        if self.use_bias:
            self.add_param("bias", self._bias(ctx.init_rng))
        out = (shape[0], U) if self.return_sequences else (U,)
        return [out] + [(U,)] * self.cell.n_states if self.return_state else out

    def forward(self, x, *states, training=False, mask=None):
        xp, p, cell = B.xp, self.params, self.cell
        W, R, bias = p["kernel"], p["recurrent_kernel"], p.get("bias")
        dt = W.dtype
        N, T, F = x.shape
        s = Tape(self._pool)
        if training and self.dropout > 0:
            keep = self.rng.random((N, 1, F), dtype=np.float32) >= self.dropout
            s.drop = B.asarray(keep).astype(dt) * dt.type(1.0 / (1.0 - self.dropout))
            x = x * s.drop
        X = x.transpose(1, 0, 2)  # time-major (T, N, F), in the order the steps run
        # a column of ones after the features carries the input bias through the input products (forward: Z,
        # backward: its gradient as the last row of X^T dZ), so no pass over Z adds or sums it
        Fa = F + (bias is not None)
        s.X = s.empty("X", (T, N, Fa), dt)
        s.X[..., :F] = X[::-1] if self.go_backwards else X
        if bias is not None:
            s.X[..., F] = 1
        brec = None
        if bias is not None and cell.split_bias:
            bias, brec = bias[0], bias[1]
        G, U = cell.G, self.units
        s.scale = k = cell.scale(dt)  # fused cells: sigmoid-gate blocks pre-scaled by 0.5, (G, 1, U)
        if k is not None:
            kf = k.reshape(-1)
            W, R = W * kf, R * kf
            bias = None if bias is None else bias * kf
            brec = None if brec is None else brec * kf
        Wa = xp.empty((G, Fa, U), dtype=dt)  # [W; b] by gate block
        Wa[:, :F] = W.reshape(F, G, U).transpose(1, 0, 2)
        if bias is not None:
            Wa[:, F] = bias.reshape(G, U)
        s.Z = s.empty("Z", (T, G, N, U), dt)  # block-major (rnn_cells): one (N, Fa) @ (Fa, U) product per block
        xp.matmul(s.X[:, None], Wa, out=s.Z)
        Wr = xp.ascontiguousarray(R.reshape(U, G, U).transpose(1, 0, 2))  # (G, U, U): h R by block
        brec = None if brec is None else brec.reshape(G, 1, U)
        Mb = None
        if mask is not None:  # applied even when nothing is padded: testing that would read the device
            mask = xp.asarray(mask, dtype=bool)
            Mb = xp.ascontiguousarray(mask.T[::-1] if self.go_backwards else mask.T)[:, :, None]
        run(cell, s, Wr, brec, *(list(states) + [None, None])[:2], Mb, training=training)
        s.n_init = len(states)
        if self.return_sequences:  # a fresh array: the tape's buffers go back to the pool
            out = xp.empty((N, T, self.units), dtype=dt)
            H = s.H[1:].transpose(1, 0, 2)
            if Mb is None:
                out[...] = H
            else:
                xp.multiply(H, Mb.transpose(1, 0, 2), out=out)
        else:
            out = s.H[T].copy()
        if not self.return_state:
            return out, s
        return [out, s.H[T].copy()] + ([s.C[T].copy()] if s.C is not None else []), s

    def backward(self, grad, s):
        xp = B.xp
        g_out, g_h, g_c = (list(grad) + [None, None])[:3] if self.return_state else (grad, None, None)
        T, N, _ = s.X.shape
        dt = s.Z.dtype
        dh = xp.zeros((N, self.units), dtype=dt) if g_h is None else g_h.astype(dt, copy=True)
        dc = None
        if self.cell.n_states == 2:
            dc = xp.zeros((N, self.units), dtype=dt) if g_c is None else g_c.astype(dt, copy=True)
        dseq = None
        if g_out is not None and self.return_sequences:
            dseq = s.empty("dseq", (T, N, self.units), dt)
            g_tn = g_out.transpose(1, 0, 2)
            if s.Mb is None:
                dseq[...] = g_tn
            else:  # padded outputs are constant zeros: their gradient stops here
                xp.multiply(g_tn, s.Mb, out=dseq)
        elif g_out is not None:
            dh += g_out
        W, R = self.params["kernel"], self.params["recurrent_kernel"]
        dh0, dc0 = run_back(self.cell, s, R, dseq, dh, dc)
        F = W.shape[0]
        dZ2, dRec2 = s.dZ.reshape(T * N, -1), s.dRec.reshape(T * N, -1)
        gWa = xp.matmul(dZ2.T, s.X.reshape(T * N, -1))  # (G*U, Fa): [dW; db]^T, db from the ones column
        self.grads["kernel"][...] = gWa[:, :F].T
        xp.matmul(s.H[:T].reshape(T * N, -1).T, dRec2, out=self.grads["recurrent_kernel"])
        if self.use_bias:
            gb = self.grads["bias"]
            if self.cell.split_bias:
                gb[0] = gWa[:, F]
                ones = s.X.reshape(T * N, -1)[:, F]  # the ones column: a product sums faster than .sum
                xp.matmul(ones, dRec2, out=gb[1])
            else:
                gb[...] = gWa[:, F]
        dx = None
        if self.input_grads_needed[0]:  # not for the model input: saves a (T*N, G*units) x (G*units, F) product
            dX = (dZ2 @ W.T).reshape(T, N, F)
            dx = xp.empty((N, T, F), dtype=dt)
            dx[...] = (dX[::-1] if self.go_backwards else dX).transpose(1, 0, 2)
            if s.drop is not None:
                dx *= s.drop
        return (dx, dh0, dc0)[: 1 + s.n_init]

    def compute_mask(self, mask, inputs):
        return mask if self.return_sequences else None


@register()
class SimpleRNN(RNN):
    """Fully connected recurrence: h_t = act(x_t W + h_{t-1} R + b); (N, T, F) -> (N, units) or (N, T, units)."""

    cell_class = SimpleRNNCell


@register()
class LSTM(RNN):
    """Long short-term memory (Keras gates i, f, c, o; see the module doc); (N, T, F) -> (N, [T,] units).

    ``unit_forget_bias`` (Keras's default) starts the forget-gate bias at 1.
    """

    cell_class = LSTMCell

    def __init__(
        self, units: PositiveInt, recurrent_activation: ActivationName = "sigmoid", unit_forget_bias: bool = True, **kw
    ):
        self.recurrent_activation, self.unit_forget_bias = recurrent_activation, unit_forget_bias
        super().__init__(units, **kw)

    def _bias(self, rng):
        b = super()._bias(rng)
        if self.unit_forget_bias:
            b[self.units : 2 * self.units] = 1.0
        return b


@register()
class GRU(RNN):
    """Gated recurrent unit (Keras gates z, r, h, reset_after=True; module doc); (N, T, F) -> (N, [T,] units)."""

    cell_class = GRUCell

    def __init__(self, units: PositiveInt, recurrent_activation: ActivationName = "sigmoid", **kw):
        self.recurrent_activation = recurrent_activation
        super().__init__(units, **kw)


MERGE_MODES = ("concat", "sum", "ave", "mul", None)


@register()
class Bidirectional(Layer):
    """Run ``layer`` (a recurrent layer spec) forwards and backwards and merge: y = merge(y_fwd, y_bwd).

    Output (N, [T,] 2*units) for concat, (N, [T,] units) for sum/ave/mul, both outputs as a list for
    ``merge_mode: null``; with return_state, the states follow: [y, h_f, (c_f,) h_b, (c_b)]. Initial
    states come as extra inputs, the forward layer's first. Parameters are "forward_<name>" and
    "backward_<name>"; the backward sequence is flipped back to input order before merging.
    """

    def __init__(
        self, layer: dict, merge_mode: Annotated[str, Choices(("concat", "sum", "mul", "ave"))] | None = "concat", **kw
    ):
        super().__init__(**kw)
        spec = dict(layer or {})
        cls = layer_class(spec.pop("type", "")) if spec.get("type", "") in LAYERS else None
        if cls is None or not issubclass(cls, RNN):
            raise ValueError(f"Bidirectional wraps a recurrent layer spec (SimpleRNN, LSTM, GRU), found {layer!r}")
        if merge_mode not in MERGE_MODES:
            raise ValueError(f"merge_mode must be one of {list(MERGE_MODES)}, found {merge_mode!r}")
        spec = {k: v for k, v in spec.items() if k not in ("name", "inputs", "trainable")}
        self.merge_mode = merge_mode
        self.forward_layer = cls(name=f"{self.name}/forward", **spec)
        back = dict(spec, go_backwards=not spec.get("go_backwards", False))
        self.backward_layer = cls(name=f"{self.name}/backward", **back)
        self.layer = {k: v for k, v in self.forward_layer.get_config().items() if k not in ("name", "trainable")}
        self._subs = (("forward_", self.forward_layer), ("backward_", self.backward_layer))

    def get_config(self) -> dict:
        return {**super().get_config(), "merge_mode": self.merge_mode}  # None (two outputs) is not the default

    def regularizer(self, param):
        for prefix, sub in self._subs:
            if param.startswith(prefix):
                return sub.regularizer(param[len(prefix) :]) or super().regularizer(param)
        return super().regularizer(param)

    def _bind(self):
        """Point the sublayers at this layer's parameter and gradient arrays (the model's flat-buffer views)."""
        for prefix, sub in self._subs:
            n = len(prefix)
            sub.params = {k[n:]: v for k, v in self.params.items() if k.startswith(prefix)}
            sub.grads = {k[n:]: v for k, v in self.grads.items() if k.startswith(prefix)}

    def build(self, input_shapes, ctx):
        fwd = self.forward_layer
        k = fwd.cell.n_states
        if len(input_shapes) - 1 not in (0, 2 * k):
            raise ValueError(
                f"Bidirectional({type(fwd).__name__}) takes 0 or {2 * k} initial-state inputs "
                f"(forward states, then backward), found {len(input_shapes) - 1}"
            )
        outs = []
        for (prefix, sub), states in zip(self._subs, (input_shapes[1 : 1 + k], input_shapes[1 + k :])):
            sub_shapes = [input_shapes[0], *states]
            outs.append(sub.build(sub_shapes, ctx.child(f"{self.name}/{prefix[:-1]}", len(sub_shapes))))
            for name, v in sub.params.items():
                self.params[prefix + name] = v
        of, ob = outs
        states = []
        if fwd.return_state:
            (of, *sf), (ob, *sb) = of, ob
            states = sf + sb
        if self.merge_mode is None:
            return [of, ob, *states]
        merged = (*of[:-1], 2 * of[-1]) if self.merge_mode == "concat" else of
        return [merged, *states] if states else merged

    def forward(self, x, *states, training=False, mask=None):
        self._bind()
        k = self.forward_layer.cell.n_states
        yf, cf = self.forward_layer.forward(x, *states[:k], training=training, mask=mask)
        yb, cb = self.backward_layer.forward(x, *states[k:], training=training, mask=mask)
        sf = sb = []
        if self.forward_layer.return_state:
            (yf, *sf), (yb, *sb) = yf, yb
        if self.forward_layer.return_sequences:
            yb = yb[:, ::-1]
        mode = self.merge_mode
        if mode is None:
            y = [yf, B.xp.ascontiguousarray(yb)]
        elif mode == "concat":
            y = B.xp.concatenate([yf, yb], axis=-1)
        elif mode == "mul":
            y = yf * yb
        else:
            y = yf + yb
            if mode == "ave":
                y *= 0.5
        outs = (y if mode is None else [y]) + sf + sb
        single = mode is not None and not sf
        return (outs[0] if single else outs), (cf, cb, yf, yb, len(states))

    def backward(self, grad, cache):
        cf, cb, yf, yb, n_states = cache
        self._bind()
        mode = self.merge_mode
        grads = list(grad) if isinstance(grad, (list, tuple)) else [grad]
        if mode is None:
            gf, gb, rest = grads[0], grads[1], grads[2:]
        else:
            g, rest = grads[0], grads[1:]
            gf = gb = None
            if g is not None:
                if mode == "concat":
                    u = yf.shape[-1]
                    gf, gb = g[..., :u], g[..., u:]
                elif mode == "mul":
                    gf, gb = g * yb, g * yf
                else:
                    gf = gb = g * 0.5 if mode == "ave" else g
        if gb is not None and self.forward_layer.return_sequences:
            gb = gb[:, ::-1]
        k = len(rest) // 2
        gf_all = [gf, *rest[:k]] if self.forward_layer.return_state else gf
        gb_all = [gb, *rest[k:]] if self.forward_layer.return_state else gb
        in_f = self.forward_layer.backward(gf_all, cf)  # a None gradient counts as zero there
        in_b = self.backward_layer.backward(gb_all, cb)
        return (in_f[0] + in_b[0], *in_f[1:], *in_b[1:])[: 1 + n_states]

    def compute_mask(self, mask, inputs):
        return mask if self.forward_layer.return_sequences else None
