"""Depthwise and separable convolutions (NHWC / NTC layouts, Keras's weight layouts).

Depthwise: every input channel c is convolved with its own ``depth_multiplier`` kernels; output
channel c*M + m (TensorFlow's order). It walks the KH*KW offsets of one zero-copy window view
(nnctl/ops/im2col.py), as pooling does. Separable: depthwise, then a 1x1 pointwise matrix product.
A sequence is an image of height 1, so the 1-D layers share the 2-D code path.
"""

from __future__ import annotations

from nnctl import backend as B
from nnctl import initializers
from nnctl.fields import PositiveInt
from nnctl.layers.base import CHANNELS_LAST, Layer, expect_input, register
from nnctl.ops import im2col as K


def positive_int(value, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, found {value!r}")
    return value


def lift(t: tuple, r: int) -> tuple:
    return (1,) * (2 - r) + tuple(t)  # a sequence is an image of height 1


def conv_geometry(layer, shape, kernel_size, strides, dilation_rate, padding):
    """Check a convolution config against an input shape (no batch axis); set the layer's NHWC geometry
    (_k, _s, _d: kernel, strides, dilation; _out: output size; _pads: input padding) and return C_in."""
    r = layer.rank
    expect_input(layer, shape, CHANNELS_LAST[r])
    k = K.as_tuple(kernel_size, r, "kernel_size")
    s = K.as_tuple(strides, r, "strides")
    d = K.as_tuple(dilation_rate, r, "dilation_rate")
    mode = K.check_padding(padding)
    layer._k, layer._s, layer._d = lift(k, r), lift(s, r), lift(d, r)
    geo = [
        K.output_size(n, kk, ss, dd, mode) for n, kk, ss, dd in zip(lift(shape[:-1], r), layer._k, layer._s, layer._d)
    ]
    layer._out = tuple(o for o, _ in geo)
    layer._pads = tuple(p for _, p in geo)
    if 0 in layer._out:
        span = [(kk - 1) * dd + 1 for kk, dd in zip(k, d)]
        raise ValueError(
            f"kernel_size {list(k)} with dilation_rate {list(d)} spans {span} but the input is only "
            f"{list(shape[:-1])} with padding 'valid'; use a smaller kernel or padding 'same'"
        )
    return shape[-1]


def depthwise_forward(xpad, w, layer):
    """z[n,p,q,c,m] = sum_{i,j} xpad[n, p*sh + i*dh, q*sw + j*dw, c] w[i,j,c,m]; (N, OH, OW, C, M)."""
    xp = B.xp
    win = K.windows(xpad, layer._k, layer._s, layer._d, layer._out)
    z = tmp = None
    for i, j in K.offsets(layer._k):
        part = win[:, :, :, i, j, :, None]
        if z is None:
            z = part * w[i, j]
            tmp = xp.empty_like(z)
        else:
            xp.multiply(part, w[i, j], out=tmp)
            z += tmp
    return z


def depthwise_backward(g5, xpad, w, gw, layer, need_dx: bool):
    """Given g5 = dL/dz (N, OH, OW, C, M): assign gw[i,j] = sum_{n,p,q} win_ij g5; return d xpad (or None)."""
    xp = B.xp
    win = K.windows(xpad, layer._k, layer._s, layer._d, layer._out)
    for i, j in K.offsets(layer._k):
        gw[i, j] = xp.einsum("npqc,npqcm->cm", win[:, :, :, i, j], g5)
    if not need_dx:
        return None
    dx = xp.zeros(xpad.shape, dtype=g5.dtype)
    dwin = K.windows(dx, layer._k, layer._s, layer._d, layer._out)
    for i, j in K.offsets(layer._k):
        dwin[:, :, :, i, j] += xp.einsum("npqcm,cm->npqc", g5, w[i, j])
    return dx


class _Depthwise(Layer):
    """Shared depthwise (and, with ``filters``, separable) convolution in 1-D and 2-D."""

    rank = 2
    activation_follows = True
    separable = False

    def __init__(
        self,
        kernel_size: int | list[int],
        strides: int | list[int] = 1,
        padding: str = "valid",
        depth_multiplier: int = 1,
        dilation_rate: int | list[int] = 1,
        activation: str | None = None,
        use_bias: bool = True,
        depthwise_initializer: str = "glorot_uniform",
        bias_initializer: str = "zeros",
        depthwise_regularizer: dict | None = None,
        alpha: float | None = None,
        **kw,
    ):
        super().__init__(**kw)
        self.kernel_size, self.strides, self.padding, self.dilation_rate = kernel_size, strides, padding, dilation_rate
        self.depth_multiplier, self.activation, self.use_bias, self.alpha = (
            depth_multiplier,
            activation,
            use_bias,
            alpha,
        )
        self.depthwise_initializer, self.bias_initializer = depthwise_initializer, bias_initializer
        self.depthwise_regularizer = depthwise_regularizer

    def regularizer(self, param):
        if param == "depthwise_kernel":
            return self.depthwise_regularizer or self.kernel_regularizer
        if param == "pointwise_kernel":
            return getattr(self, "pointwise_regularizer", None) or self.kernel_regularizer
        return super().regularizer(param)

    def build(self, input_shapes, ctx):
        c = conv_geometry(self, input_shapes[0], self.kernel_size, self.strides, self.dilation_rate, self.padding)
        m = positive_int(self.depth_multiplier, "depth_multiplier")
        k = K.as_tuple(self.kernel_size, self.rank, "kernel_size")
        self.add_param(
            "depthwise_kernel", initializers.initialize(self.depthwise_initializer, (*k, c, m), ctx.init_rng)
        )
        out = c * m
        if self.separable:
            out = positive_int(self.filters, "filters")
            self.add_param(
                "pointwise_kernel",
                initializers.initialize(self.pointwise_initializer, (*(1,) * self.rank, c * m, out), ctx.init_rng),
            )
        if self.use_bias:
            self.add_param("bias", initializers.initialize(self.bias_initializer, (out,), ctx.init_rng))
        return (*self._out[2 - self.rank :], out)

    def _kernel4(self, name):
        w = self.params[name]
        return w if self.rank == 2 else w[None]  # (K, C, M) -> (1, K, C, M), a view

    def forward(self, x, training=False, mask=None):
        xpad = K.pad(x if self.rank == 2 else x[:, None], self._pads)
        z = depthwise_forward(xpad, self._kernel4("depthwise_kernel"), self)
        n, oh, ow, c, m = z.shape
        y = z.reshape(n, oh, ow, c * m)
        if self.separable:  # one 2-D product: a 4-D @ 2-D matmul would run N*OH small ones
            y = (z.reshape(-1, c * m) @ self.params["pointwise_kernel"].reshape(c * m, -1)).reshape(n, oh, ow, -1)
        if self.use_bias:
            y += self.params["bias"]
        return (y if self.rank == 2 else y[:, 0]), (xpad, z, x.shape)

    def backward(self, g, cache):
        xp = B.xp
        xpad, z, x_shape = cache
        n, oh, ow, c, m = z.shape
        g4 = g if self.rank == 2 else g[:, None]
        g2 = g4.reshape(-1, g4.shape[-1])
        if self.use_bias:
            self.grads["bias"][...] = g2.sum(axis=0)
        if self.separable:
            p = self.params["pointwise_kernel"].reshape(c * m, -1)
            self.grads["pointwise_kernel"][...] = (z.reshape(-1, c * m).T @ g2).reshape(
                self.grads["pointwise_kernel"].shape
            )
            g2 = g2 @ p.T
        gw = self.grads["depthwise_kernel"]
        gw4 = gw if self.rank == 2 else gw[None]
        dx = depthwise_backward(
            xp.ascontiguousarray(g2).reshape(n, oh, ow, c, m),
            xpad,
            self._kernel4("depthwise_kernel"),
            gw4,
            self,
            self.input_grads_needed[0],
        )
        if dx is None:
            return (None,)
        dx = K.crop(dx, self._pads)
        return (dx if self.rank == 2 else dx[:, 0],)

    def compute_mask(self, mask, inputs):
        return None  # a convolution mixes padded steps into its outputs (and may change the length)


@register()
class DepthwiseConv2D(_Depthwise):
    """Depthwise 2-D convolution: y[n,p,q,c*M+m] = b[c*M+m] + sum_{i,j} xpad[n, p*sh + i*dh, q*sw + j*dw, c]
    W[i,j,c,m]; x (N, H, W, C), depthwise_kernel W (KH, KW, C, M), y (N, OH, OW, C*M)."""

    rank = 2

    def __init__(
        self,
        kernel_size: int | list[int],
        strides: int | list[int] = (1, 1),
        padding: str = "valid",
        depth_multiplier: int = 1,
        dilation_rate: int | list[int] = (1, 1),
        **kw,
    ):
        super().__init__(
            kernel_size,
            strides=strides,
            padding=padding,
            depth_multiplier=depth_multiplier,
            dilation_rate=dilation_rate,
            **kw,
        )


@register()
class DepthwiseConv1D(_Depthwise):
    """Depthwise 1-D convolution: y[n,t,c*M+m] = b[c*M+m] + sum_k xpad[n, t*s + k*d, c] W[k,c,m];
    x (N, T, C), depthwise_kernel W (K, C, M), y (N, OT, C*M)."""

    rank = 1


class _Separable(_Depthwise):
    separable = True

    def __init__(
        self,
        filters: PositiveInt,
        kernel_size: int | list[int],
        pointwise_initializer: str = "glorot_uniform",
        pointwise_regularizer: dict | None = None,
        **kw,
    ):
        self.filters, self.pointwise_initializer, self.pointwise_regularizer = (
            filters,
            pointwise_initializer,
            pointwise_regularizer,
        )
        super().__init__(kernel_size, **kw)


@register()
class SeparableConv2D(_Separable):
    """Depthwise then pointwise 2-D convolution: z = depthwise(x, D) (N, OH, OW, C*M), y = z P + b;
    depthwise_kernel D (KH, KW, C, M), pointwise_kernel P (1, 1, C*M, filters), y (N, OH, OW, filters)."""

    rank = 2

    def __init__(
        self,
        filters: PositiveInt,
        kernel_size: int | list[int],
        strides: int | list[int] = (1, 1),
        padding: str = "valid",
        dilation_rate: int | list[int] = (1, 1),
        **kw,
    ):
        super().__init__(filters, kernel_size, strides=strides, padding=padding, dilation_rate=dilation_rate, **kw)


@register()
class SeparableConv1D(_Separable):
    """Depthwise then pointwise 1-D convolution: z = depthwise(x, D) (N, OT, C*M), y = z P + b;
    depthwise_kernel D (K, C, M), pointwise_kernel P (1, C*M, filters), y (N, OT, filters)."""

    rank = 1
