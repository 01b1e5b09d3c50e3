"""Depthwise, separable and transposed convolutions (NHWC / NTC layouts, Keras's weight layouts).

Depthwise: every input channel c is convolved with its own ``depth_multiplier`` kernels; output
channel c*M + m (TensorFlow's order). It walks the KH*KW offsets of one zero-copy window view
(nnctl/ops/im2col.py), as pooling does. Separable: depthwise, then a 1x1 pointwise matrix product.
Transposed: the adjoint of a convolution, col2im of x @ W^T. A sequence is an image of height 1, so
the 1-D layers share the 2-D code path.
"""

from __future__ import annotations

from nnctl import backend as B
from nnctl import initializers
from nnctl.layers.base import Layer, register
from nnctl.ops import im2col as K

_RANK_WORDS = {1: "(steps, channels)", 2: "(height, width, channels)"}


def _positive_int(value, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, found {value!r}")
    return value


def _lift(t: tuple, r: int) -> tuple:
    return (1,) * (2 - r) + tuple(t)  # a sequence is an image of height 1


def conv_geometry(layer, shape, kernel_size, strides, dilation_rate, padding):
    """Check a convolution config against an input shape (no batch axis); set the layer's NHWC geometry
    (_k, _s, _d: kernel, strides, dilation; _out: output size; _pads: input padding) and return C_in."""
    r = layer.rank
    if len(shape) != r + 1:
        raise ValueError(f"{type(layer).__name__} expects input of shape {_RANK_WORDS[r]}, found {tuple(shape)}")
    k = K.as_tuple(kernel_size, r, "kernel_size")
    s = K.as_tuple(strides, r, "strides")
    d = K.as_tuple(dilation_rate, r, "dilation_rate")
    mode = K.check_padding(padding)
    layer._k, layer._s, layer._d = _lift(k, r), _lift(s, r), _lift(d, r)
    geo = [K.output_size(n, kk, ss, dd, mode) for n, kk, ss, dd in zip(_lift(shape[:-1], r), layer._k, layer._s,
                                                                       layer._d)]
    layer._out = tuple(o for o, _ in geo)
    layer._pads = tuple(p for _, p in geo)
    if 0 in layer._out:
        span = [(kk - 1) * dd + 1 for kk, dd in zip(k, d)]
        raise ValueError(f"kernel_size {list(k)} with dilation_rate {list(d)} spans {span} but the input is only "
                         f"{list(shape[:-1])} with padding 'valid'; use a smaller kernel or padding 'same'")
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
    activation_is_node = True
    separable = False

    def __init__(self, kernel_size: int | list[int], strides: int | list[int] = 1, padding: str = "valid",
                 depth_multiplier: int = 1, dilation_rate: int | list[int] = 1, activation: str | None = None,
                 use_bias: bool = True, depthwise_initializer: str = "glorot_uniform", bias_initializer: str = "zeros",
                 depthwise_regularizer: dict | None = None, alpha: float | None = None, **kw):
        super().__init__(**kw)
        self.kernel_size, self.strides, self.padding, self.dilation_rate = kernel_size, strides, padding, dilation_rate
        self.depth_multiplier, self.activation, self.use_bias, self.alpha = depth_multiplier, activation, use_bias, alpha
        self.depthwise_initializer, self.bias_initializer = depthwise_initializer, bias_initializer
        self.depthwise_regularizer = depthwise_regularizer

    def regularizer(self, param):
        if param == "depthwise_kernel":
            return self.depthwise_regularizer or self.kernel_regularizer
        if param == "pointwise_kernel":
            return getattr(self, "pointwise_regularizer", None) or self.kernel_regularizer
        return super().regularizer(param)

    def build(self, input_shapes, rng):
        c = conv_geometry(self, input_shapes[0], self.kernel_size, self.strides, self.dilation_rate, self.padding)
        m = _positive_int(self.depth_multiplier, "depth_multiplier")
        k = K.as_tuple(self.kernel_size, self.rank, "kernel_size")
        self.add_param("depthwise_kernel", initializers.initialize(self.depthwise_initializer, (*k, c, m), rng))
        out = c * m
        if self.separable:
            out = _positive_int(self.filters, "filters")
            self.add_param("pointwise_kernel", initializers.initialize(
                self.pointwise_initializer, (*(1,) * self.rank, c * m, out), rng))
        if self.use_bias:
            self.add_param("bias", initializers.initialize(self.bias_initializer, (out,), rng))
        return (*self._out[2 - self.rank:], out)

    def _kernel4(self, name):
        w = self.params[name]
        return w if self.rank == 2 else w[None]  # (K, C, M) -> (1, K, C, M), a view

    def forward(self, x, training=False, mask=None):
        xpad = K.pad(x if self.rank == 2 else x[:, None], self._pads)
        z = depthwise_forward(xpad, self._kernel4("depthwise_kernel"), self)
        n, oh, ow, c, m = z.shape
        y = z.reshape(n, oh, ow, c * m)
        if self.separable:
            y = y @ self.params["pointwise_kernel"].reshape(c * m, -1)
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
                self.grads["pointwise_kernel"].shape)
            g2 = g2 @ p.T
        gw = self.grads["depthwise_kernel"]
        gw4 = gw if self.rank == 2 else gw[None]
        dx = depthwise_backward(xp.ascontiguousarray(g2).reshape(n, oh, ow, c, m), xpad,
                                self._kernel4("depthwise_kernel"), gw4, self, self.input_grads_needed[0])
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

    def __init__(self, kernel_size: int | list[int], strides: int | list[int] = (1, 1), padding: str = "valid",
                 depth_multiplier: int = 1, dilation_rate: int | list[int] = (1, 1), **kw):
        super().__init__(kernel_size, strides=strides, padding=padding, depth_multiplier=depth_multiplier,
                         dilation_rate=dilation_rate, **kw)


@register()
class DepthwiseConv1D(_Depthwise):
    """Depthwise 1-D convolution: y[n,t,c*M+m] = b[c*M+m] + sum_k xpad[n, t*s + k*d, c] W[k,c,m];
    x (N, T, C), depthwise_kernel W (K, C, M), y (N, OT, C*M)."""

    rank = 1


class _Separable(_Depthwise):
    separable = True

    def __init__(self, filters: int, kernel_size: int | list[int], pointwise_initializer: str = "glorot_uniform",
                 pointwise_regularizer: dict | None = None, **kw):
        self.filters, self.pointwise_initializer, self.pointwise_regularizer = (filters, pointwise_initializer,
                                                                                pointwise_regularizer)
        super().__init__(kernel_size, **kw)


@register()
class SeparableConv2D(_Separable):
    """Depthwise then pointwise 2-D convolution: z = depthwise(x, D) (N, OH, OW, C*M), y = z P + b;
    depthwise_kernel D (KH, KW, C, M), pointwise_kernel P (1, 1, C*M, filters), y (N, OH, OW, filters)."""

    rank = 2

    def __init__(self, filters: int, kernel_size: int | list[int], strides: int | list[int] = (1, 1),
                 padding: str = "valid", dilation_rate: int | list[int] = (1, 1), **kw):
        super().__init__(filters, kernel_size, strides=strides, padding=padding, dilation_rate=dilation_rate, **kw)


@register()
class SeparableConv1D(_Separable):
    """Depthwise then pointwise 1-D convolution: z = depthwise(x, D) (N, OT, C*M), y = z P + b;
    depthwise_kernel D (K, C, M), pointwise_kernel P (1, C*M, filters), y (N, OT, filters)."""

    rank = 1


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
    activation_is_node = True

    def __init__(self, filters: int, kernel_size: int | list[int], strides: int | list[int] = 1,
                 padding: str = "valid", output_padding: int | list[int] | None = None,
                 dilation_rate: int | list[int] = 1, activation: str | None = None, use_bias: bool = True,
                 kernel_initializer: str = "glorot_uniform", bias_initializer: str = "zeros",
                 alpha: float | None = None, **kw):
        super().__init__(**kw)
        self.filters, self.kernel_size, self.strides, self.padding = filters, kernel_size, strides, padding
        self.output_padding, self.dilation_rate, self.activation = output_padding, dilation_rate, activation
        self.use_bias, self.kernel_initializer, self.bias_initializer = use_bias, kernel_initializer, bias_initializer
        self.alpha = alpha

    def build(self, input_shapes, rng):
        shape, r, name = input_shapes[0], self.rank, type(self).__name__
        if len(shape) != r + 1:
            raise ValueError(f"{name} expects input of shape {_RANK_WORDS[r]}, found {tuple(shape)}")
        f = _positive_int(self.filters, "filters")
        k = K.as_tuple(self.kernel_size, r, "kernel_size")
        s = K.as_tuple(self.strides, r, "strides")
        d = K.as_tuple(self.dilation_rate, r, "dilation_rate")
        mode = K.check_padding(self.padding)
        op = None
        if self.output_padding is not None:
            vals = (self.output_padding,) * r if isinstance(self.output_padding, int) else self.output_padding
            if (not isinstance(vals, (list, tuple)) or len(vals) != r
                    or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v for v in vals)):
                raise ValueError(f"output_padding must be a non-negative integer or a list of {r}, "
                                 f"found {self.output_padding!r}")
            if any(v >= ss for v, ss in zip(vals, s)):
                raise ValueError(f"output_padding {list(vals)} must be smaller than strides {list(s)}")
            op = tuple(vals)
        self._k, self._s, self._d = _lift(k, r), _lift(s, r), _lift(d, r)
        self._in = _lift(shape[:-1], r)
        geo = [transpose_length(n, kk, ss, dd, mode, None if op is None else oo)
               for n, kk, ss, dd, oo in zip(self._in, self._k, self._s, self._d, _lift(op or (0,) * r, r))]
        self._out = tuple(o for o, _ in geo)
        self._cut = tuple(c for _, c in geo)
        full = tuple((n - 1) * ss + (kk - 1) * dd + 1 for n, kk, ss, dd in zip(self._in, self._k, self._s, self._d))
        self._buf = tuple(max(fl, c + o) for fl, c, o in zip(full, self._cut, self._out))  # the full image's size
        c_in = shape[-1]
        self.add_param("kernel", initializers.initialize(self.kernel_initializer, (*k, f, c_in), rng))
        if self.use_bias:
            self.add_param("bias", initializers.initialize(self.bias_initializer, (f,), rng))
        return (*self._out[2 - r:], f)

    def _window(self, a):
        (ch, cw), (oh, ow) = self._cut, self._out
        return a[:, ch:ch + oh, cw:cw + ow]

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

    def __init__(self, filters: int, kernel_size: int | list[int], strides: int | list[int] = (1, 1),
                 padding: str = "valid", output_padding: int | list[int] | None = None,
                 dilation_rate: int | list[int] = (1, 1), **kw):
        super().__init__(filters, kernel_size, strides=strides, padding=padding, output_padding=output_padding,
                         dilation_rate=dilation_rate, **kw)


@register()
class Conv1DTranspose(_ConvTranspose):
    """Transposed 1-D convolution: y[n, t*s + k*d - cut, f] += x[n,t,c] W[k,f,c], + b[f]; x (N, T, C_in),
    kernel W (K, F, C_in), y (N, OT, F), OT as Conv2DTranspose's OH."""

    rank = 1
