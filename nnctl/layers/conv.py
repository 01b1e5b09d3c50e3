"""Convolution layers: Conv2D, Conv1D, ZeroPadding2D, UpSampling2D (NHWC / NTC layouts).

A convolution is one matrix product over im2col patches (see nnctl/ops/im2col.py), taken in chunks of
samples whose patch matrix fits in cache, in training and inference alike, so no batch-sized patch
matrix exists (85 MB for the benchmark CNN's 2nd layer at batch 128). Conv1D is Conv2D on a height-1
image, so both share one code path.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np

from nnctl import backend as B
from nnctl import initializers, kernels
from nnctl.fields import Choices, NonNegativeInt, PositiveInt
from nnctl.initializers import InitializerName
from nnctl.layers.base import CHANNELS_LAST, Layer, expect_input, register
from nnctl.ops import im2col as K
from nnctl.ops.activations import ActivationName

Padding = Annotated[str, Choices(("valid", "same"))]
_INFERENCE_CHUNK_BYTES = 8 * 2**20  # patch matrix per chunk in inference: a few MB stays in cache
# and in training: 3 samples of the benchmark CNN's 2nd layer; backward rebuilds each chunk's patches
# (cheaper than keeping them: measured in benchmarks/README.md)
_TRAINING_CHUNK_BYTES = 2 * 2**20
# patch width KH*KW*C up to which the compiled direct convolution's adjoints replace the backward products
# (a 3x3 kernel on one channel: 9 values, where [cols, 1]^T g is a memory-bound product; measured faster
# at 9, slower at 27), and up to which its forward replaces im2col + product: 0, as the forward measured
# slower than OpenBLAS on a 10-wide patch matrix (docs/performance.md, "Compiled kernels")
_DIRECT_MAX_WIDTH = 16
_DIRECT_FORWARD_MAX_WIDTH = 0


class _Conv(Layer):
    """Shared Conv1D/Conv2D: y = im2col(pad(x)) @ W.reshape(-1, F) + b.

    Internally every input is an NHWC image (a sequence is an image of height 1); the kernel is
    (KH, KW, C_in, F) for Conv2D and (K, C_in, F) for Conv1D, the bias (F,).
    Copied patches carry a ones column and the kernel matrix the bias as its last row, so the bias is
    inside the product: [cols, 1] @ [W; b].
    Backward, per chunk c of samples: [dW; db] += [cols_c, 1]^T g_c, and dx_c = col2im(g_c W^T),
    the (M, KH*KW*C) product added back through the input windows, one kernel offset at a time.
    """

    rank = 2
    activation_follows = True
    #: set by the graph's fusion pass (Model._fuse): the ReLU node after this layer runs inside it in training
    relu_fused = False

    def __init__(
        self,
        filters: PositiveInt,
        kernel_size: PositiveInt | list[PositiveInt],
        strides: PositiveInt | list[PositiveInt] = 1,
        padding: Padding = "valid",
        dilation_rate: PositiveInt | list[PositiveInt] = 1,
        activation: ActivationName | None = None,
        use_bias: bool = True,
        kernel_initializer: InitializerName = "glorot_uniform",
        bias_initializer: InitializerName = "zeros",
        alpha: float | None = None,
        **kw,
    ):
        super().__init__(**kw)
        self.filters, self.kernel_size, self.strides, self.padding = filters, kernel_size, strides, padding
        self.dilation_rate, self.activation, self.use_bias, self.alpha = dilation_rate, activation, use_bias, alpha
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer
        self._spare = None  # patch buffer free for the next forward (one-chunk training)
        self._scratch = None  # patch buffer of one chunk, used within one forward or backward

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
            raise ValueError(
                f"kernel_size {list(k)} with dilation_rate {list(d)} spans {list(span)} but the input "
                f"is only {list(shape[:-1])} with padding 'valid'; use a smaller kernel or padding 'same'"
            )
        return shape[-1]

    def build(self, input_shapes, ctx):
        c_in = self._geometry(input_shapes[0])
        k = K.as_tuple(self.kernel_size, self.rank, "kernel_size")
        self.add_param(
            "kernel", initializers.initialize(self.kernel_initializer, (*k, c_in, self.filters), ctx.init_rng)
        )
        if self.use_bias:
            self.add_param("bias", initializers.initialize(self.bias_initializer, (self.filters,), ctx.init_rng))
        return (*self._out[2 - self.rank :], self.filters)

    def _image(self, a):
        return a if self.rank == 2 else a[:, None]  # (N, T, C) -> (N, 1, T, C), a view

    def _buffer(self, name: str, size: int, dtype):
        """A flat buffer of ``size`` elements kept on the layer across steps (a fresh one page-faults
        every step); ``name`` "_spare" is taken (None left behind) until backward gives it back."""
        xp = B.xp
        buf = getattr(self, name)
        if buf is None or buf.size != size or buf.dtype != dtype or not isinstance(buf, xp.ndarray):
            buf = xp.empty(size, dtype=dtype)
        setattr(self, name, None if name == "_spare" else buf)
        return buf

    def forward(self, x, training=False, mask=None):
        xp = B.xp
        # the graph's fusion pass moved the ReLU node after this layer into it (training only): max(y, 0)
        # is taken while each chunk of y is in cache, and backward masks g the same way
        relu = training and self.relu_fused
        xpad = K.pad(self._image(x), self._pads)
        n, c = xpad.shape[0], xpad.shape[3]
        if self._k[0] * self._k[1] * c <= _DIRECT_FORWARD_MAX_WIDTH and K.compiled(xpad, training):
            y = self._forward_direct(xpad, relu)
            return y.reshape(n, *self._out[2 - self.rank :], self.filters), (
                "direct",
                None,
                None,
                xpad,
                x.shape,
                y if relu else None,
            )
        rows, width = self._out[0] * self._out[1], self._k[0] * self._k[1] * c
        if self._k == (1, 1) and self._s == (1, 1):
            cols, per, buf = xpad.reshape(-1, c), n, None  # already the patch matrix (a view when contiguous)
            y = cols @ self._kernel_matrix(fold=False)
            if self.use_bias:
                y += self.params["bias"]
        else:
            per = max(
                1,
                min(
                    n,
                    (_TRAINING_CHUNK_BYTES if training else _INFERENCE_CHUNK_BYTES)
                    // (rows * width * x.dtype.itemsize),
                ),
            )
            fast = K.compiled(xpad, training)
            if per < n:  # backward rebuilds each chunk's patches from the input
                y = self._forward_chunked(xpad, x, per, relu, fast)
                out = y.reshape(n, *self._out[2 - self.rank :], self.filters)
                return out, ((None, per, None, xpad, x.shape, y if relu else None) if training else None)
            # one chunk: keep its patches for backward; take the buffer the last backward gave back
            buf = self._buffer("_spare", n * rows * (width + self.use_bias), x.dtype)
            cols = K.im2col(xpad, self._k, self._s, self._d, self._out, out=buf, ones=self.use_bias, fast=fast)
            y = cols @ self._kernel_matrix(fold=True)  # the bias rides in the product
        if relu:
            xp.maximum(y, 0, out=y)
        out = y.reshape(n, *self._out[2 - self.rank :], self.filters)
        return out, (cols, per, buf, xpad, x.shape, y if relu else None)

    def _forward_direct(self, xpad, relu: bool):
        """y (N, OH, OW, F) by the compiled direct convolution (nnctl/kernels/conv.py): no patch matrix, the
        bias added as each output row starts and the fused ReLU as it ends."""
        n, c, f = xpad.shape[0], xpad.shape[3], self.filters
        y = np.empty((n, *self._out, f), dtype=xpad.dtype)
        w = self.params["kernel"].reshape(*self._k, c, f)
        bias = self.params["bias"] if self.use_bias else np.empty(0, dtype=w.dtype)
        kernels.load("conv").direct_forward(xpad, w, bias, *self._s, *self._d, y, self.use_bias, relu)
        return y

    def _backward_direct(self, g, xpad, y):
        """dW, db (and dx when needed) by the compiled direct convolution's adjoints; ``y`` (the output)
        when the ReLU is fused: g is masked by y > 0 as the kernels read it."""
        kc = kernels.load("conv")
        n, c, f = xpad.shape[0], xpad.shape[3], self.filters
        g4 = g.reshape(n, *self._out, f)
        relu = y is not None
        y4 = y.reshape(g4.shape) if relu else g4  # not read without the fused ReLU
        gk = self.grads["kernel"]
        gw = gk.reshape(*self._k, c, f) if gk.flags.c_contiguous else np.empty((*self._k, c, f), dtype=gk.dtype)
        gb = self.grads["bias"] if self.use_bias else np.empty(0, dtype=gk.dtype)
        kc.direct_backward_params(xpad, g4, y4, relu, *self._s, *self._d, gw, gb, self.use_bias)
        if not gk.flags.c_contiguous:
            gk[...] = gw.reshape(gk.shape)
        if not self.input_grads_needed[0]:
            return (None,)
        dx = np.empty(xpad.shape, dtype=g.dtype)
        w = self.params["kernel"].reshape(*self._k, c, f)
        kc.direct_backward_input(g4, y4, relu, w, *self._s, *self._d, dx)
        dx = K.crop(dx, self._pads)
        return (dx if self.rank == 2 else dx[:, 0],)

    def _kernel_matrix(self, fold: bool):
        """The (KH*KW*C, F) kernel, with the bias as one more row when ``fold`` (patches copied with a
        ones column, K.im2col(ones=True)): the bias then costs no pass of its own over the output, which
        for a first layer (a 9- or 27-wide patch matrix) measured 28% of its forward product."""
        w = self.params["kernel"].reshape(-1, self.filters)
        if not (fold and self.use_bias):
            return w
        return B.xp.concatenate([w, self.params["bias"][None]], axis=0)

    def _forward_chunked(self, xpad, x, per: int, relu: bool = False, fast: bool | None = None):
        """y from the patch matrix of ``per`` samples at a time, so it stays in cache instead of one
        batch-sized matrix (85 MB for the benchmark CNN's 2nd layer at batch 128, 680 MB at 1024 in
        inference); the bias rides in each chunk's product (a ones column of the patches). Returns the
        (N*OH*OW, F) rows."""
        xp = B.xp
        n, c = xpad.shape[0], xpad.shape[3]
        rows = self._out[0] * self._out[1]
        width = self._k[0] * self._k[1] * c
        kernel = self._kernel_matrix(fold=True)
        wb = width + self.use_bias  # a ones column for the bias row of the kernel matrix
        y = xp.empty((n * rows, self.filters), dtype=x.dtype)
        buf = self._buffer("_scratch", per * rows * wb, x.dtype)
        for a in range(0, n, per):
            part = xpad[a : a + per]
            cols = K.im2col(
                part,
                self._k,
                self._s,
                self._d,
                self._out,
                out=buf[: len(part) * rows * wb],
                ones=self.use_bias,
                fast=fast,
            )
            ya = y[a * rows : (a + len(part)) * rows]
            xp.matmul(cols, kernel, out=ya)
            if relu:  # the fused ReLU, while the chunk's rows are in cache
                xp.maximum(ya, 0, out=ya)
        return y

    def backward(self, g, cache):
        """Per chunk c of the forward's ``per`` samples: dW += cols_c^T g_c, db += 1^T g_c and
        dx_c = col2im(g_c W^T), while the chunk's patches (rebuilt from the input when the forward kept
        none) and gradient rows are in cache."""
        xp = B.xp
        cols, per, buf, xpad, x_shape, y_relu = cache
        if isinstance(cols, str) or (
            self._k[0] * self._k[1] * xpad.shape[3] <= _DIRECT_MAX_WIDTH and kernels.active()
        ):  # the direct adjoints read the padded input and g once, no patches
            if buf is not None:
                self._spare = buf
            return self._backward_direct(g, xpad, y_relu)
        f, n, c = self.filters, xpad.shape[0], xpad.shape[3]
        g2 = g.reshape(-1, f)
        rows, width = g2.shape[0] // n, self._k[0] * self._k[1] * c
        gk = self.grads["kernel"]
        # with a contiguous gradient (the flat buffer's view) out= writes it in place
        gk2 = gk.reshape(-1, f) if gk.flags.c_contiguous else xp.empty((width, f), dtype=gk.dtype)
        gb = self.grads["bias"] if self.use_bias else None
        want_dx = self.input_grads_needed[0]  # not for the model input
        if want_dx:
            w_t = xp.ascontiguousarray(self.params["kernel"].reshape(-1, f).T)  # (F, KH*KW*C)
            dx = xp.empty(xpad.shape, dtype=g.dtype)
        # patches copied with a ones column (every path but the 1x1 view): [cols, 1]^T g is [dW; db] in one product
        fold = gb is not None and (cols is None or cols.shape[1] == width + 1)
        wb = width + 1 if fold else width
        acc = xp.empty((wb, f), dtype=gk.dtype) if fold else gk2
        ones = xp.ones(min(per, n) * rows, dtype=g2.dtype) if gb is not None and not fold else None
        scratch = None if cols is not None else self._buffer("_scratch", per * rows * wb, xpad.dtype)
        part_k = part_b = None
        if y_relu is not None:  # the fused ReLU's derivative, g * (y > 0), one chunk at a time in cache
            hit = xp.empty((min(per, n) * rows, f), dtype=bool)
            masked = xp.empty((min(per, n) * rows, f), dtype=g2.dtype)
        for a in range(0, n, per):
            m = min(per, n - a)
            ga = g2[a * rows : (a + m) * rows]
            if y_relu is not None:
                xp.greater(y_relu[a * rows : (a + m) * rows], 0, out=hit[: m * rows])
                ga = xp.multiply(ga, hit[: m * rows], out=masked[: m * rows])
            if scratch is not None:
                cols = K.im2col(
                    xpad[a : a + m], self._k, self._s, self._d, self._out, out=scratch[: m * rows * wb], ones=fold
                )
            if a == 0:
                xp.matmul(cols.T, ga, out=acc)
            else:
                part_k = xp.matmul(cols.T, ga, out=part_k)
                acc += part_k
            if ones is not None:  # a matrix-vector product is several times faster than sum(axis=0)
                if a == 0:
                    xp.matmul(ones, ga, out=gb)
                else:
                    part_b = xp.matmul(ones[: len(ga)], ga, out=part_b)
                    gb += part_b
            if want_dx:
                # one product per chunk, g_c W^T (M, KH*KW*C), into the patch buffer (its patches are used up),
                # then added back through the windows: few large products (many small ones make OpenBLAS's
                # threads wait for each other, measured 8x slower on a busy machine)
                into = buf if buf is not None else scratch
                back = xp.matmul(ga, w_t, out=None if into is None else into[: m * rows * width].reshape(-1, width))
                K.write_windows(dx[a : a + m], back, self._k, self._s, self._d, self._out)
        if fold:
            gk2[...] = acc[:width]
            gb[...] = acc[width]
        if not gk.flags.c_contiguous:
            gk[...] = gk2.reshape(gk.shape)
        if buf is not None:
            self._spare = buf  # cols is consumed, so the next forward may overwrite it
        if not want_dx:
            return (None,)
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
    def __init__(
        self,
        filters: PositiveInt,
        kernel_size: PositiveInt | list[PositiveInt],
        strides: PositiveInt | list[PositiveInt] = (1, 1),
        padding: Padding = "valid",
        dilation_rate: PositiveInt | list[PositiveInt] = (1, 1),
        **kw,
    ):
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
    raise ValueError(
        f"padding must be an int, [pad_h, pad_w] or [[top, bottom], [left, right]] of non-negative "
        f"integers, found {padding!r}"
    )


@register()
class ZeroPadding2D(Layer):
    """Zero border around an image: (N, H, W, C) -> (N, t+H+b, l+W+r, C); backward crops the gradient."""

    def __init__(self, padding: NonNegativeInt | list[NonNegativeInt | list[NonNegativeInt]] = (1, 1), **kw):
        super().__init__(**kw)
        self.padding = padding

    def build(self, input_shapes, ctx):
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

    def __init__(
        self,
        size: PositiveInt | list[PositiveInt] = (2, 2),
        interpolation: Annotated[str, Choices(("nearest",))] = "nearest",
        **kw,
    ):
        super().__init__(**kw)
        self.size, self.interpolation = size, interpolation

    def build(self, input_shapes, ctx):
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
