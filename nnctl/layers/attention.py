"""Multi-head scaled dot-product attention with Keras's weight layout.

Per head h: Q_h = x_q Wq_h + bq_h, K_h = x_k Wk_h + bk_h, V_h = x_v Wv_h + bv_h,
A_h = softmax(Q_h K_h^T / sqrt(key_dim) + masks) (over keys), O_h = A_h V_h, y = sum_h O_h Wo_h + bo.
Shapes (Keras's EinsumDense kernels): query_kernel (Dq, H, key_dim), query_bias (H, key_dim),
key_kernel (Dk, H, key_dim), value_kernel (Dv, H, value_dim), output_kernel (H, value_dim, Dout),
output_bias (Dout,). To PyTorch's nn.MultiheadAttention (E = H*key_dim = H*value_dim):
q_proj_weight = query_kernel.reshape(Dq, E).T, out_proj.weight = output_kernel.reshape(E, Dout).T.
"""

from __future__ import annotations

import math

import numpy as np

from nnctl import backend as B
from nnctl import initializers
from nnctl.fields import PositiveInt, Rate
from nnctl.initializers import InitializerName
from nnctl.layers.base import Layer, register

_NEG = -1e9  # a masked score; exp(-1e9 - max) is exactly 0 in float32 and float64


@register()
class MultiHeadAttention(Layer):
    """Multi-head attention: y = concat_h(softmax(Q_h K_h^T / sqrt(d_k)) V_h) Wo + bo (module doc for the maths).

    Inputs: [x] self-attention, [query, value] (key = value) or [query, value, key]; query (N, Tq, Dq),
    value (N, Tv, Dv), key (N, Tv, Dk); output (N, Tq, output_shape or Dq). ``causal`` (alias Keras's
    ``use_causal_mask``) lets query i see keys j <= i only. The padding mask masks keys in
    self-attention (one input, or the same node given twice); a mask given as a list per input uses
    the value's. ``dropout`` drops attention weights in training.
    """

    mask_per_input = True

    def __init__(
        self,
        num_heads: PositiveInt,
        key_dim: PositiveInt,
        value_dim: PositiveInt | None = None,
        dropout: Rate = 0.0,
        use_bias: bool = True,
        causal: bool = False,
        use_causal_mask: bool | None = None,
        output_shape: PositiveInt | list[PositiveInt] | None = None,
        kernel_initializer: InitializerName = "glorot_uniform",
        bias_initializer: InitializerName = "zeros",
        **kw,
    ):
        super().__init__(**kw)
        if int(num_heads) < 1 or int(key_dim) < 1 or (value_dim is not None and int(value_dim) < 1):
            raise ValueError(
                f"num_heads, key_dim and value_dim must be positive, found {num_heads}, {key_dim}, {value_dim}"
            )
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), found {dropout}")
        if isinstance(output_shape, (list, tuple)):
            if len(output_shape) != 1:
                raise ValueError(f"output_shape must be one size (the last axis), found {list(output_shape)}")
            output_shape = output_shape[0]
        self.num_heads, self.key_dim, self.value_dim = int(num_heads), int(key_dim), value_dim
        self.dropout, self.use_bias = dropout, use_bias
        self.causal = bool(causal if use_causal_mask is None else use_causal_mask)
        self.use_causal_mask = None  # folded into ``causal``
        self.out_dim = None if output_shape is None else int(output_shape)  # ``output_shape`` is the graph's
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer

    def get_config(self) -> dict:
        cfg = super().get_config()
        cfg.pop("output_shape", None)
        if self.out_dim is not None:
            cfg["output_shape"] = self.out_dim
        return cfg

    def build(self, input_shapes, ctx):
        if not 1 <= len(input_shapes) <= 3:
            raise ValueError(f"MultiHeadAttention takes 1 to 3 inputs ([query, value, key]), found {len(input_shapes)}")
        q = tuple(input_shapes[0])
        v = tuple(input_shapes[1]) if len(input_shapes) > 1 else q
        k = tuple(input_shapes[2]) if len(input_shapes) > 2 else v
        for what, s in (("query", q), ("value", v), ("key", k)):
            if len(s) != 2:
                raise ValueError(f"MultiHeadAttention {what} must have shape (timesteps, features), found {list(s)}")
        if k[0] != v[0]:
            raise ValueError(f"key and value must have the same number of steps, found {k[0]} and {v[0]}")
        H, kd = self.num_heads, self.key_dim
        vd = self.value_dim or kd
        out = self.out_dim or q[-1]
        init = initializers.initialize
        for name, d_in, d in (("query", q[-1], kd), ("key", k[-1], kd), ("value", v[-1], vd)):
            self.add_param(f"{name}_kernel", init(self.kernel_initializer, (d_in, H, d), ctx.init_rng))
            if self.use_bias:
                self.add_param(f"{name}_bias", init(self.bias_initializer, (H, d), ctx.init_rng))
        self.add_param("output_kernel", init(self.kernel_initializer, (H, vd, out), ctx.init_rng))
        if self.use_bias:
            self.add_param("output_bias", init(self.bias_initializer, (out,), ctx.init_rng))
        return (q[0], out)

    def _project(self, x2, name, N, T):
        """x2 (N*T, D) -> (N, H, T, d)."""
        W = self.params[f"{name}_kernel"]
        y = x2 @ W.reshape(W.shape[0], -1)
        if self.use_bias:
            y += self.params[f"{name}_bias"].reshape(-1)
        return y.reshape(N, T, self.num_heads, -1).transpose(0, 2, 1, 3)

    def _project_back(self, dY, x2, name):
        """dY (N, H, T, d) of a projection -> writes its kernel/bias gradients, returns dx2 (N*T, D)."""
        xp = B.xp
        W = self.params[f"{name}_kernel"]
        N, H, T, d = dY.shape
        d2 = dY.transpose(0, 2, 1, 3).reshape(N * T, H * d)
        xp.matmul(x2.T, d2, out=self.grads[f"{name}_kernel"].reshape(W.shape[0], H * d))
        if self.use_bias:
            d2.sum(axis=0, out=self.grads[f"{name}_bias"].reshape(-1))
        return d2 @ W.reshape(W.shape[0], -1).T

    def _allowed(self, inputs, mask, Tq, Tv):
        """Boolean (N|1, 1, Tq|1, Tv) array of query->key pairs that may attend, or None for all."""
        xp = B.xp
        key_mask = None
        if isinstance(mask, (list, tuple)):
            key_mask = mask[min(1, len(mask) - 1)]
        elif mask is not None and all(x is inputs[0] for x in inputs):
            key_mask = mask
        allowed = None
        if key_mask is not None:  # applied even when nothing is padded: testing that would read the device
            allowed = xp.asarray(key_mask, dtype=bool)[:, None, None, :]
        if self.causal:
            tri = xp.tril(xp.ones((Tq, Tv), dtype=bool))[None, None]
            allowed = tri if allowed is None else allowed & tri
        return allowed

    def forward(self, *inputs, training=False, mask=None):
        xp = B.xp
        q_in = inputs[0]
        v_in = inputs[1] if len(inputs) > 1 else q_in
        k_in = inputs[2] if len(inputs) > 2 else v_in
        (N, Tq, _), Tv = q_in.shape, v_in.shape[1]
        x2 = [x.reshape(N * x.shape[1], x.shape[2]) for x in (q_in, k_in, v_in)]
        Q = self._project(x2[0], "query", N, Tq)
        Q *= Q.dtype.type(1.0 / math.sqrt(self.key_dim))
        K = self._project(x2[1], "key", N, Tv)
        V = self._project(x2[2], "value", N, Tv)
        S = Q @ K.swapaxes(-1, -2)  # (N, H, Tq, Tv)
        allowed = self._allowed(inputs, mask, Tq, Tv)
        if allowed is not None:
            S = xp.where(allowed, S, xp.asarray(_NEG, dtype=S.dtype))
        S -= S.max(axis=-1, keepdims=True)
        P = xp.exp(S, out=S)
        P /= P.sum(axis=-1, keepdims=True)
        drop, Pd = None, P
        if training and self.dropout > 0:
            keep = self.rng.random(P.shape, dtype=np.float32) >= self.dropout
            drop = B.asarray(keep).astype(P.dtype) * P.dtype.type(1.0 / (1.0 - self.dropout))
            Pd = P * drop
        heads = Pd @ V  # (N, H, Tq, vd)
        Oc = heads.transpose(0, 2, 1, 3).reshape(N * Tq, -1)
        Wo = self.params["output_kernel"]
        y = Oc @ Wo.reshape(-1, Wo.shape[-1])
        if self.use_bias:
            y += self.params["output_bias"]
        cache = (x2, Q, K, V, P, drop, Pd, Oc, allowed, len(inputs))
        return y.reshape(N, Tq, -1), cache

    def backward(self, g, cache):
        xp = B.xp
        x2, Q, K, V, P, drop, Pd, Oc, allowed, n_in = cache
        N, H, Tq, vd = Q.shape[0], Q.shape[1], Q.shape[2], V.shape[-1]
        Wo = self.params["output_kernel"]
        g2 = g.reshape(N * Tq, -1)
        xp.matmul(Oc.T, g2, out=self.grads["output_kernel"].reshape(H * vd, -1))
        if self.use_bias:
            g2.sum(axis=0, out=self.grads["output_bias"])
        dO = (g2 @ Wo.reshape(H * vd, -1).T).reshape(N, Tq, H, vd).transpose(0, 2, 1, 3)
        dP = dO @ V.swapaxes(-1, -2)
        dV = Pd.swapaxes(-1, -2) @ dO
        if drop is not None:
            dP *= drop
        dS = dP
        dS -= (dP * P).sum(axis=-1, keepdims=True)
        dS *= P
        if allowed is not None:
            dS = xp.where(allowed, dS, xp.asarray(0, dtype=dS.dtype))
        dQ = dS @ K
        dQ *= dQ.dtype.type(1.0 / math.sqrt(self.key_dim))
        dK = dS.swapaxes(-1, -2) @ Q
        shapes = [(N, Tq, -1), (N, K.shape[2], -1), (N, K.shape[2], -1)]
        dq, dk, dv = (
            self._project_back(d, x, name).reshape(s)
            for d, x, name, s in zip((dQ, dK, dV), x2, ("query", "key", "value"), shapes)
        )
        if n_in == 1:
            return (dq + dk + dv,)
        if n_in == 2:
            return (dq, dk + dv)
        return (dq, dv, dk)

    def compute_mask(self, mask, inputs):
        return mask[0] if isinstance(mask, (list, tuple)) else mask
