"""im2col.write_windows (the convolution's input gradient written over a reused buffer) equals col2im into
zeros computed here by explicit loops, whatever the buffer held before, over strides and dilations."""

import numpy as np
import pytest

from helpers import dev, host
from nnctl.ops import im2col as K


def loop_col2im(cols, padded_shape, kernel, strides, dilation, out_hw):
    """sum over windows and offsets, one pixel at a time."""
    n, _, _, c = padded_shape
    (kh, kw), (oh, ow) = kernel, out_hw
    c6 = cols.reshape(n, oh, ow, kh, kw, c)
    dx = np.zeros(padded_shape)
    for p in range(oh):
        for q in range(ow):
            for i in range(kh):
                for j in range(kw):
                    dx[:, p * strides[0] + i * dilation[0], q * strides[1] + j * dilation[1]] += c6[:, p, q, i, j]
    return dx


@pytest.mark.parametrize(
    "hw,kernel,strides,dilation",
    [
        ((6, 7), (3, 3), (1, 1), (1, 1)),
        ((7, 6), (2, 3), (1, 1), (2, 1)),
        ((7, 7), (3, 3), (2, 2), (1, 1)),
        ((5, 9), (1, 3), (1, 2), (1, 2)),
    ],
)
def test_write_windows_overwrites_the_buffer_with_col2im(hw, kernel, strides, dilation):
    rng = np.random.default_rng(0)
    n, c = 2, 3
    out_hw = tuple((s - (k - 1) * d - 1) // st + 1 for s, k, st, d in zip(hw, kernel, strides, dilation))
    cols = rng.normal(size=(n * out_hw[0] * out_hw[1], kernel[0] * kernel[1] * c)).astype(np.float32)
    x = dev(np.full((n, *hw, c), np.nan, np.float32))  # stale contents must not survive
    K.write_windows(x, dev(cols), kernel, strides, dilation, out_hw)
    want = loop_col2im(cols.astype(np.float64), (n, *hw, c), kernel, strides, dilation, out_hw)
    np.testing.assert_allclose(host(x), want, rtol=1e-5, atol=1e-6)
    assert host(x).dtype == np.float32


def test_im2col_with_a_ones_column_is_the_patches_then_ones():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 5, 6, 3)).astype(np.float32)
    plain = host(K.im2col(dev(x), (2, 3), (1, 2), (2, 1), (3, 2)))
    out = dev(np.full(plain.shape[0] * (plain.shape[1] + 1), np.nan, np.float32))
    folded = host(K.im2col(dev(x), (2, 3), (1, 2), (2, 1), (3, 2), out=out, ones=True))
    np.testing.assert_array_equal(folded, np.hstack([plain, np.ones((len(plain), 1), np.float32)]))
    np.testing.assert_array_equal(host(out).reshape(folded.shape), folded)  # written in place, not a copy
