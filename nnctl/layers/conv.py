"""Convolution layers: Conv2D, Conv1D, ZeroPadding2D, UpSampling2D (NHWC / NTC layouts).

A convolution is one matrix product over im2col patches (see nnctl/ops/im2col.py). Conv1D is Conv2D
on a height-1 image, so both share one code path.
"""

from __future__ import annotations

from typing import Annotated

from nnctl import backend as B
from nnctl import initializers
from nnctl.fields import Choices, NonNegativeInt, PositiveInt
from nnctl.initializers import InitializerName
from nnctl.layers.base import CHANNELS_LAST, Layer, expect_input, register
from nnctl.ops.activations import ActivationName
from nnctl.ops import im2col as K

Padding = Annotated[str, Choices(("valid", "same"))]
_INFERENCE_CHUNK_BYTES = 8 * 2**20  # patch matrix per chunk in inference: a few MB stays in cache


class _Conv(Layer):
    """Shared Conv1D/Conv2D: y = im2col(pad(x)) @ W.reshape(-1, F) + b.

    Internally every input is an NHWC image (a sequence is an image of height 1); the kernel is
    (KH, KW, C_in, F) for Conv2D and (K, C_in, F) for Conv1D, the bias (F,).
    Backward: dW = cols^T g, db = sum g, and dx = sum over kernel offsets (i, j) of g W[i, j]^T
    added into the input window at that offset.
    """

    rank = 2
    activation_is_node = True

    def __init__(self, filters: PositiveInt, kernel_size: PositiveInt | list[PositiveInt],
                 strides: PositiveInt | list[PositiveInt] = 1, padding: Padding = "valid",
                 dilation_rate: PositiveInt | list[PositiveInt] = 1, activation: ActivationName | None = None,
                 use_bias: bool = True, kernel_initializer: InitializerName = "glorot_uniform",
                 bias_initializer: InitializerName = "zeros",
                 alpha: float | None = None, **kw):
        super().__init__(**kw)
        self.filters, self.kernel_size, self.strides, self.padding = filters, kernel_size, strides, padding
        self.dilation_rate, self.activation, self.use_bias, self.alpha = dilation_rate, activation, use_bias, alpha
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer
        self._spare = None  # patch buffer free for the next forward

    def _geometry(self, shape):
        """Validate the config against an input shape (no batch axis); set the NHWC geometry."""
        r = self.rank
        expect_input(self, shape, CHANNELS_LAST[r])
        if not isinstance(self.filters, int) or isinstance(self.filters, bool) or self.filters < 1:
            raise ValueError(f"filters must be a positive integer, found {self.filters!r}")
        k = K.as_tuple(self.kernel_size, r, "kernel_size")
        s = K.as_tuple(self.strides, r, "strides")
        d = K.as_tuple(self.dilation_rate, r, "dilation_rate")
        mode = K.check_padding(self.padding)
        # a sequence is an image of height 1, with a height-1 kernel
        self._k, self._s, self._d = ((1,) * (2 - r) + k, (1,) * (2 - r) + s, (1,) * (2 - r) + d)
        spatial = (1,) * (2 - r) + tuple(shape[:-1])
        geo = [K.output_size(n, kk, ss, dd, mode) for n, kk, ss, dd in zip(spatial, self._k, self._s, self._d)]
        self._out = tuple(o for o, _ in geo)
        self._pads = tuple(p for _, p in geo)
        if 0 in self._out:
            span = tuple((kk - 1) * dd + 1 for kk, dd in zip(k, d))
            raise ValueError(f"kernel_size {list(k)} with dilation_rate {list(d)} spans {list(span)} but the input "
                             f"is only {list(shape[:-1])} with padding 'valid'; use a smaller kernel or padding 'same'")
        return shape[-1]

    def build(self, input_shapes, rng):
        c_in = self._geometry(input_shapes[0])
        k = K.as_tuple(self.kernel_size, self.rank, "kernel_size")
        self.add_param("kernel", initializers.initialize(self.kernel_initializer, (*k, c_in, self.filters), rng))
        if self.use_bias:
            self.add_param("bias", initializers.initialize(self.bias_initializer, (self.filters,), rng))
        return (*self._out[2 - self.rank:], self.filters)

    def _image(self, a):
        return a if self.rank == 2 else a[:, None]  # (N, T, C) -> (N, 1, T, C), a view

    def forward(self, x, training=False, mask=None):
        xp = B.xp
        xpad = K.pad(self._image(x), self._pads)
        n, c = xpad.shape[0], xpad.shape[3]
        buf = None
        per_sample = self._out[0] * self._out[1] * self._k[0] * self._k[1] * c * x.dtype.itemsize
        if not training and n > 1 and n * per_sample > _INFERENCE_CHUNK_BYTES:
            return self._forward_chunked(xpad, x, max(1, _INFERENCE_CHUNK_BYTES // per_sample)), None
        if self._k == (1, 1) and self._s == (1, 1):
            cols = xpad.reshape(-1, c)  # already the patch matrix (a view when x is contiguous)
        else:
            # reuse the patch buffer released by the last backward: a fresh one page-faults on every step
            buf, self._spare = self._spare, None
            size = n * self._out[0] * self._out[1] * self._k[0] * self._k[1] * c
            if buf is None or buf.size != size or buf.dtype != x.dtype or not isinstance(buf, xp.ndarray):
                buf = xp.empty(size, dtype=x.dtype)
            cols = K.im2col(xpad, self._k, self._s, self._d, self._out, out=buf)
        y = cols @ self.params["kernel"].reshape(-1, self.filters)
        if self.use_bias:
            y += self.params["bias"]
        return y.reshape(n, *self._out[2 - self.rank:], self.filters), (cols, buf, xpad.shape, x.shape)

    def _forward_chunked(self, xpad, x, per: int):
        """Inference without a cache: the patch matrix of ``per`` samples at a time, so it stays in cache
        instead of one batch-sized matrix (680 MB for a 1024-image batch of the MNIST CNN's 2nd layer)."""
        xp = B.xp
        n, c = xpad.shape[0], xpad.shape[3]
        rows = self._out[0] * self._out[1]
        width = self._k[0] * self._k[1] * c
        kernel = self.params["kernel"].reshape(-1, self.filters)
        y = xp.empty((n * rows, self.filters), dtype=x.dtype)
        buf = xp.empty(per * rows * width, dtype=x.dtype)
        for a in range(0, n, per):
            part = xpad[a:a + per]
            cols = K.im2col(part, self._k, self._s, self._d, self._out, out=buf[:len(part) * rows * width])
            xp.matmul(cols, kernel, out=y[a * rows:(a + len(part)) * rows])
        if self.use_bias:
            y += self.params["bias"]
        return y.reshape(n, *self._out[2 - self.rank:], self.filters)

    def backward(self, g, cache):
        xp = B.xp
        cols, buf, padded_shape, x_shape = cache
        f = self.filters
        g2 = g.reshape(-1, f)
        gk = self.grads["kernel"]
        if gk.flags.c_contiguous:  # reshape is then a view, so out= writes the gradient in place
            xp.matmul(cols.T, g2, out=gk.reshape(-1, f))
        else:
            gk[...] = (cols.T @ g2).reshape(gk.shape)
        self._spare = buf  # cols is consumed from here on, so the next forward may overwrite it
        if self.use_bias:  # a matrix-vector product is several times faster than sum(axis=0)
            xp.matmul(xp.ones(g2.shape[0], dtype=g2.dtype), g2, out=self.grads["bias"])
        if not self.input_grads_needed[0]:  # the model input: no gradient wanted
            return (None,)
        # dx per kernel offset: each product is contiguous (M, C), which adds into the strided window
        # faster than scattering one (M, KH*KW*C) product through col2im
        w4 = self.params["kernel"].reshape(*self._k, -1, f)
        dx = xp.zeros(padded_shape, dtype=g.dtype)
        dwin = K.windows(dx, self._k, self._s, self._d, self._out)
        out4 = (x_shape[0], *self._out, padded_shape[3])
        for i, j in K.offsets(self._k):
            dwin[:, :, :, i, j] += (g2 @ w4[i, j].T).reshape(out4)
        dx = K.crop(dx, self._pads)
        return (dx if self.rank == 2 else dx[:, 0],)

    def compute_mask(self, mask, inputs):
        return None  # a convolution mixes padded steps into its outputs (and may change the length)


@register()
class Conv2D(_Conv):
    """2-D convolution (cross-correlation, as Keras): y[n,p,q,f] = b[f] + sum_{i,j,c} xpad[n, p*sh + i*dh,
    q*sw + j*dw, c] W[i,j,c,f]; x (N, H, W, C_in), W (KH, KW, C_in, F), y (N, OH, OW, F)."""

    rank = 2

    # pair defaults as in Keras (an int default would make the spec validator refuse a list)
    def __init__(self, filters: PositiveInt, kernel_size: PositiveInt | list[PositiveInt],
                 strides: PositiveInt | list[PositiveInt] = (1, 1), padding: Padding = "valid",
                 dilation_rate: PositiveInt | list[PositiveInt] = (1, 1), **kw):
        super().__init__(filters, kernel_size, strides=strides, padding=padding, dilation_rate=dilation_rate, **kw)


@register()
class Conv1D(_Conv):
    """1-D convolution over steps: y[n,t,f] = b[f] + sum_{k,c} xpad[n, t*s + k*d, c] W[k,c,f];
    x (N, T, C_in), W (K, C_in, F), y (N, OT, F)."""

    rank = 1


def _padding_pairs(padding) -> tuple[tuple[int, int], tuple[int, int]]:
    """ZeroPadding2D's int / (h, w) / ((top, bottom), (left, right)) as ((t, b), (l, r))."""
    def ok(v):
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    if ok(padding):
        return (padding, padding), (padding, padding)
    if isinstance(padding, (list, tuple)) and len(padding) == 2:
        if all(ok(v) for v in padding):
            return (padding[0], padding[0]), (padding[1], padding[1])
        if all(isinstance(p, (list, tuple)) and len(p) == 2 and all(ok(v) for v in p) for p in padding):
            return tuple(padding[0]), tuple(padding[1])
    raise ValueError(f"padding must be an int, [pad_h, pad_w] or [[top, bottom], [left, right]] of non-negative "
                     f"integers, found {padding!r}")


@register()
class ZeroPadding2D(Layer):
    """Zero border around an image: (N, H, W, C) -> (N, t+H+b, l+W+r, C); backward crops the gradient."""

    def __init__(self, padding: NonNegativeInt | list[NonNegativeInt | list[NonNegativeInt]] = (1, 1), **kw):
        super().__init__(**kw)
        self.padding = padding

    def build(self, input_shapes, rng):
        shape = input_shapes[0]
        expect_input(self, shape, CHANNELS_LAST[2])
        self._pads = _padding_pairs(self.padding)
        (t, b), (left, r) = self._pads
        return (shape[0] + t + b, shape[1] + left + r, shape[2])

    def forward(self, x, training=False, mask=None):
        return K.pad(x, self._pads), None

    def backward(self, g, cache):
        return (K.crop(g, self._pads),)

    def compute_mask(self, mask, inputs):
        return None


@register()
class UpSampling2D(Layer):
    """Nearest-neighbour upsampling: y[n, p, q, c] = x[n, p // sh, q // sw, c]; (N, H, W, C) -> (N, H*sh, W*sw, C).

    Backward sums the gradient over each sh x sw block.
    """

    def __init__(self, size: PositiveInt | list[PositiveInt] = (2, 2),
                 interpolation: Annotated[str, Choices(("nearest",))] = "nearest", **kw):
        super().__init__(**kw)
        self.size, self.interpolation = size, interpolation

    def build(self, input_shapes, rng):
        shape = input_shapes[0]
        expect_input(self, shape, CHANNELS_LAST[2])
        if str(self.interpolation).lower() != "nearest":
            raise ValueError(f"interpolation {self.interpolation!r} is not supported; use 'nearest'")
        self._size = K.as_tuple(self.size, 2, "size")
        return (shape[0] * self._size[0], shape[1] * self._size[1], shape[2])

    def forward(self, x, training=False, mask=None):
        n, h, w, c = x.shape
        sh, sw = self._size
        # one copy through a broadcast view, instead of two passes of repeat()
        y = B.xp.broadcast_to(x[:, :, None, :, None, :], (n, h, sh, w, sw, c)).reshape(n, h * sh, w * sw, c)
        return y, x.shape

    def backward(self, g, x_shape):
        n, h, w, c = x_shape
        sh, sw = self._size
        return (g.reshape(n, h, sh, w, sw, c).sum(axis=(2, 4)),)

    def compute_mask(self, mask, inputs):
        return None
