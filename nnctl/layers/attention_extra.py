"""Attention without projections, as Keras's: Attention (Luong, dot-product) and AdditiveAttention (Bahdanau).

Both score every query step against every key step, take a softmax over the keys and average the
values: y = softmax(s(q, k) + masks) v. Padded keys (the value's (N, Tv) mask) and, with
``use_causal_mask``, keys after the query step get -1e9 added to their scores, as Keras does; a padded
query step outputs zeros (its (N, Tq) mask is passed on).
"""

from __future__ import annotations

import numpy as np

from nnctl import backend as B
from nnctl import initializers
from nnctl.layers.base import Layer, register
from nnctl.ops import activations

_NEG = 1e9  # Keras's masked-score offset: exp(-1e9) is exactly 0 in float32 and float64


class _ScoreAttention(Layer):
    """Shared masking, softmax, dropout and value average; subclasses give the scores and their gradients."""

    mask_per_input = True

    def __init__(self, use_scale: bool, dropout: float = 0.0, use_causal_mask: bool = False, **kw):
        super().__init__(**kw)
        if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout < 1:
            raise ValueError(f"dropout must be a number in [0, 1), found {dropout!r}")
        self.use_scale, self.dropout, self.use_causal_mask = use_scale, dropout, use_causal_mask

    def build(self, input_shapes, ctx):
        if len(input_shapes) not in (2, 3) or any(len(s) != 2 for s in input_shapes):
            raise ValueError(
                f"{type(self).__name__} takes inputs [query, value] or [query, value, key], each "
                f"(steps, features), found {[tuple(s) for s in input_shapes]}"
            )
        q, v = input_shapes[0], input_shapes[1]
        k = input_shapes[2] if len(input_shapes) == 3 else v
        if k[0] != v[0] or q[1] != k[1]:
            raise ValueError(f"key {tuple(k)} must have the value's steps {v[0]} and the query's features {q[1]}")
        self._build_scores(q[1], ctx.init_rng)
        return (q[0], v[1])

    def forward(self, q, v, k=None, training=False, mask=None):
        xp = B.xp
        key = v if k is None else k
        s, score_cache = self._scores(q, key)
        # the graph gives one mask per input; a single one is the query's (the value's too in self-attention)
        masks = list(mask) if isinstance(mask, (list, tuple)) else [mask, mask if v is q else None, None]
        allowed = None
        if masks[1] is not None:  # the value's mask marks padded keys (applied without testing it on the device)
            allowed = xp.asarray(masks[1], dtype=bool)[:, None, :]
        if self.use_causal_mask:
            causal = xp.tril(xp.ones((q.shape[1], key.shape[1]), dtype=bool))[None]
            allowed = causal if allowed is None else allowed & causal
        if allowed is not None:
            s = s - _NEG * (~allowed).astype(s.dtype)
        w = activations.softmax(s)
        drop = None
        if training and self.dropout > 0:
            keep = B.asarray(self.rng.random(w.shape, dtype=np.float32) >= self.dropout)
            drop = keep.astype(w.dtype) * w.dtype.type(1.0 / (1.0 - self.dropout))
        wd = w if drop is None else w * drop
        y = xp.matmul(wd, v)
        qmask = None
        if masks[0] is not None:
            qmask = xp.asarray(masks[0], dtype=bool)[:, :, None].astype(y.dtype)
            y = y * qmask
        return y, (q, v, k, w, wd, drop, qmask, score_cache)

    def backward(self, g, cache):
        xp = B.xp
        q, v, k, w, wd, drop, qmask, score_cache = cache
        if qmask is not None:
            g = g * qmask
        dv = xp.matmul(wd.transpose(0, 2, 1), g)
        dw = xp.matmul(g, v.transpose(0, 2, 1))
        if drop is not None:
            dw = dw * drop
        ds = w * (dw - (dw * w).sum(axis=-1, keepdims=True))  # softmax backward; the masks are constants
        dq, dk = self._score_backward(ds, score_cache)
        if k is None:
            return dq, dv + dk
        return dq, dv, dk

    def compute_mask(self, mask, inputs):
        return mask[0] if isinstance(mask, (list, tuple)) else mask


@register()
class Attention(_ScoreAttention):
    """Dot-product (Luong) attention: s = c q k^T, y = softmax(s) v; c a learned scalar ``scale`` (shape (1,))
    when ``use_scale`` (initialised to 1), else 1. query (N, Tq, D), value (N, Tv, Dv), key (N, Tv, D; default:
    the value), y (N, Tq, Dv)."""

    def __init__(self, use_scale: bool = False, score_mode: str = "dot", **kw):
        super().__init__(use_scale, **kw)
        if score_mode != "dot":
            raise ValueError(f"score_mode {score_mode!r} is not supported; use 'dot'")
        self.score_mode = score_mode

    def _build_scores(self, dim, rng):
        if self.use_scale:
            self.add_param("scale", np.ones((1,), dtype=self.dtype))  # Keras's scalar, with one axis

    def _scores(self, q, key):
        s = B.xp.matmul(q, key.transpose(0, 2, 1))
        if not self.use_scale:
            return s, (q, key, None)
        return s * self.params["scale"], (q, key, s)

    def _score_backward(self, ds, cache):
        xp = B.xp
        q, key, raw = cache
        if raw is not None:
            self.grads["scale"][...] = (ds * raw).sum()
            ds = ds * self.params["scale"]
        return xp.matmul(ds, key), xp.matmul(ds.transpose(0, 2, 1), q)


@register()
class AdditiveAttention(_ScoreAttention):
    """Additive (Bahdanau) attention: s[n,i,j] = sum_d c_d tanh(q[n,i,d] + k[n,j,d]), y = softmax(s) v; c the
    learned (D,) ``scale`` when ``use_scale`` (glorot_uniform), else ones. query (N, Tq, D), value (N, Tv, Dv),
    key (N, Tv, D; default: the value), y (N, Tq, Dv); it holds an (N, Tq, Tv, D) tensor."""

    def __init__(self, use_scale: bool = True, **kw):
        super().__init__(use_scale, **kw)

    def _build_scores(self, dim, rng):
        if self.use_scale:
            self.add_param("scale", initializers.initialize("glorot_uniform", (dim,), rng))

    def _scores(self, q, key):
        t = B.xp.tanh(q[:, :, None, :] + key[:, None, :, :])
        s = (t * self.params["scale"]).sum(axis=-1) if self.use_scale else t.sum(axis=-1)
        return s, t

    def _score_backward(self, ds, t):
        d4 = ds[..., None]
        if self.use_scale:
            self.grads["scale"][...] = (d4 * t).sum(axis=(0, 1, 2))
            d4 = d4 * self.params["scale"]
        pre = d4 * (1 - t * t)
        return pre.sum(axis=2), pre.sum(axis=1)
