"""Transposed convolutions: the adjoint of a convolution with the same geometry, col2im of x @ W^T.

Kernels are Keras's (KH, KW, filters, C_in); output sizes follow Keras (``deconv_output_length``) and
the output is TensorFlow's window of the full result, as the input gradient of a convolution over the
output with TensorFlow's 'same' padding rule. A sequence is an image of height 1.
"""

from __future__ import annotations

from nnctl import backend as B
from nnctl import initializers
from nnctl.fields import PositiveInt
from nnctl.layers.base import CHANNELS_LAST, Layer, expect_input, register
from nnctl.layers.conv_extra import lift, positive_int
from nnctl.ops import im2col as K


def transpose_length(n: int, k: int, s: int, d: int, padding: str, output_padding: int | None) -> tuple[int, int]:
    """Keras's output length of a transposed convolution along one axis, and how many leading entries of
    the full (uncropped) result (n-1)*s + (k-1)*d + 1 are cut: TensorFlow's 'same' rule on the output."""
    span = (k - 1) * d + 1
    full = (n - 1) * s + span
    if output_padding is None:
        out = n * s + max(span - s, 0) if padding == "valid" else n * s
    else:
        out = (n - 1) * s + span - 2 * (span // 2 if padding == "same" else 0) + output_padding
    cut = max(full - out, 0) // 2 if padding == "same" else 0
    return out, cut


class _ConvTranspose(Layer):
    """Shared Conv1DTranspose/Conv2DTranspose: the adjoint of a convolution with the same geometry.

    full = col2im(x W^T), W viewed as (KH*KW*F, C_in), an (N, (H-1)*sh + span_h, ..., F) image; y is its
    window [cut, cut + out) per axis (zeros past the full size when output_padding asks for more), + b.
    Backward: the gradient placed back into a full-size zero image, im2col'd to G (N*H*W, KH*KW*F);
    dx = G W, dW = G^T x.
    """

    rank = 2
    activation_follows = True

    def __init__(
        self,
        filters: PositiveInt,
        kernel_size: int | list[int],
        strides: int | list[int] = 1,
        padding: str = "valid",
        output_padding: int | list[int] | None = None,
        dilation_rate: int | list[int] = 1,
        activation: str | None = None,
        use_bias: bool = True,
        kernel_initializer: str = "glorot_uniform",
        bias_initializer: str = "zeros",
        alpha: float | None = None,
        **kw,
    ):
        super().__init__(**kw)
        self.filters, self.kernel_size, self.strides, self.padding = filters, kernel_size, strides, padding
        self.output_padding, self.dilation_rate, self.activation = output_padding, dilation_rate, activation
        self.use_bias, self.kernel_initializer, self.bias_initializer = use_bias, kernel_initializer, bias_initializer
        self.alpha = alpha

    def build(self, input_shapes, ctx):
        shape, r = input_shapes[0], self.rank
        expect_input(self, shape, CHANNELS_LAST[r])
        f = positive_int(self.filters, "filters")
        k = K.as_tuple(self.kernel_size, r, "kernel_size")
        s = K.as_tuple(self.strides, r, "strides")
        d = K.as_tuple(self.dilation_rate, r, "dilation_rate")
        mode = K.check_padding(self.padding)
        op = None
        if self.output_padding is not None:
            vals = (self.output_padding,) * r if isinstance(self.output_padding, int) else self.output_padding
            if (
                not isinstance(vals, (list, tuple))
                or len(vals) != r
                or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v for v in vals)
            ):
                raise ValueError(
                    f"output_padding must be a non-negative integer or a list of {r}, found {self.output_padding!r}"
                )
            if any(v >= ss for v, ss in zip(vals, s)):
                raise ValueError(f"output_padding {list(vals)} must be smaller than strides {list(s)}")
            op = tuple(vals)
        self._k, self._s, self._d = lift(k, r), lift(s, r), lift(d, r)
        self._in = lift(shape[:-1], r)
        geo = [
            transpose_length(n, kk, ss, dd, mode, None if op is None else oo)
            for n, kk, ss, dd, oo in zip(self._in, self._k, self._s, self._d, lift(op or (0,) * r, r))
        ]
        self._out = tuple(o for o, _ in geo)
        self._cut = tuple(c for _, c in geo)
        full = tuple((n - 1) * ss + (kk - 1) * dd + 1 for n, kk, ss, dd in zip(self._in, self._k, self._s, self._d))
        self._buf = tuple(max(fl, c + o) for fl, c, o in zip(full, self._cut, self._out))  # the full image's size
        c_in = shape[-1]
        self.add_param("kernel", initializers.initialize(self.kernel_initializer, (*k, f, c_in), ctx.init_rng))
        if self.use_bias:
            self.add_param("bias", initializers.initialize(self.bias_initializer, (f,), ctx.init_rng))
        return (*self._out[2 - r :], f)

    def _window(self, a):
        (ch, cw), (oh, ow) = self._cut, self._out
        return a[:, ch : ch + oh, cw : cw + ow]

    def forward(self, x, training=False, mask=None):
        x4 = x if self.rank == 2 else x[:, None]
        n, c_in, f = x4.shape[0], x4.shape[-1], self.filters
        cols = x4.reshape(-1, c_in) @ self.params["kernel"].reshape(-1, c_in).T  # (N*H*W, KH*KW*F)
        full = K.col2im(cols, (n, *self._buf, f), self._k, self._s, self._d, self._in)
        y = B.xp.ascontiguousarray(self._window(full))
        if self.use_bias:
            y += self.params["bias"]
        return (y if self.rank == 2 else y[:, 0]), x4

    def backward(self, g, x4):
        xp = B.xp
        g4 = g if self.rank == 2 else g[:, None]
        n, c_in, f = x4.shape[0], x4.shape[-1], self.filters
        if self.use_bias:
            self.grads["bias"][...] = g4.reshape(-1, f).sum(axis=0)
        gfull = xp.zeros((n, *self._buf, f), dtype=g.dtype)
        self._window(gfull)[...] = g4
        gcols = K.im2col(gfull, self._k, self._s, self._d, self._in)  # (N*H*W, KH*KW*F)
        w2 = self.params["kernel"].reshape(-1, c_in)
        self.grads["kernel"][...] = (gcols.T @ x4.reshape(-1, c_in)).reshape(self.grads["kernel"].shape)
        if not self.input_grads_needed[0]:
            return (None,)
        dx = (gcols @ w2).reshape(x4.shape)
        return (dx if self.rank == 2 else dx[:, 0],)

    def compute_mask(self, mask, inputs):
        return None


@register()
class Conv2DTranspose(_ConvTranspose):
    """Transposed 2-D convolution (the adjoint of Conv2D): y[n, p*sh + i*dh - cut_h, q*sw + j*dw - cut_w, f] +=
    x[n,p,q,c] W[i,j,f,c], + b[f]; x (N, H, W, C_in), kernel W (KH, KW, F, C_in), y (N, OH, OW, F) with
    OH = H*sh ('same'), H*sh + max(span - sh, 0) ('valid'), or (H-1)*sh + span - 2*pad + output_padding."""

    rank = 2

    def __init__(
        self,
        filters: PositiveInt,
        kernel_size: int | list[int],
        strides: int | list[int] = (1, 1),
        padding: str = "valid",
        output_padding: int | list[int] | None = None,
        dilation_rate: int | list[int] = (1, 1),
        **kw,
    ):
        super().__init__(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            output_padding=output_padding,
            dilation_rate=dilation_rate,
            **kw,
        )


@register()
class Conv1DTranspose(_ConvTranspose):
    """Transposed 1-D convolution: y[n, t*s + k*d - cut, f] += x[n,t,c] W[k,f,c], + b[f]; x (N, T, C_in),
    kernel W (K, F, C_in), y (N, OT, F), OT as Conv2DTranspose's OH."""

    rank = 1
