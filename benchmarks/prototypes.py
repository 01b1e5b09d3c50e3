"""Prototypes of the changes proposed in docs/performance.md, applied as monkeypatches so their gain can be
measured before anyone edits nnctl (nothing here is imported by nnctl itself).

    .venv/bin/python benchmarks/profile_step.py --model cnn --patch malloc,pool,relu,inputgrad
    .venv/bin/python benchmarks/profile_step.py --model cnn --predict --patch malloc,relu,convinfer

Patches (names for --patch):
  malloc     glibc mallopt: keep freed memory in the heap (M_MMAP_THRESHOLD and M_TRIM_THRESHOLD = 1 GiB), so
             the multi-megabyte temporaries of every step stop being mmap'd, page-faulted and unmapped anew
  pool       MaxPooling2D backward for non-overlapping windows (pool == strides, no padding, divisible input):
             boolean first-max masks on a reshape view, every dx element written once (no zeroing, no +=)
  relu       node activations "relu" in place on the layer's fresh output (np.maximum(x, 0, out=x))
  convinfer  Conv2D/Conv1D inference (training=False): im2col + GEMM over chunks of samples into one reused
             <= 64 MiB patch buffer instead of a new N*OH*OW*KH*KW*C buffer per call
  inputgrad  no gradient for the model input: the first node's Dense/Conv backward skips dx
"""

from __future__ import annotations

import ctypes
import types

import numpy as np

from nnctl import backend as B


def patch_malloc(model=None) -> None:
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD
    libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD


def _pool_backward_fast(self, g, cache, _orig=None):
    xp = B.xp
    xpad, y, shape = cache
    ph, pw = self._p
    n, h, w, c = shape
    if (self.op != "max" or self.rank != 2 or self._p != self._s or any(self._pads[0]) or any(self._pads[1])
            or h % ph or w % pw):
        return _orig(g, cache)
    x6 = xpad.reshape(n, h // ph, ph, w // pw, pw, c)
    dx = xp.empty(shape, dtype=g.dtype)
    d6 = dx.reshape(n, h // ph, ph, w // pw, pw, c)
    left = xp.ones(y.shape, dtype=bool)  # windows whose first maximum is not found yet
    hit = xp.empty(y.shape, dtype=bool)
    for i in range(ph):
        for j in range(pw):  # row-major window order: the first maximum takes the gradient
            xp.equal(x6[:, :, i, :, j], y, out=hit)
            hit &= left
            xp.multiply(g, hit, out=d6[:, :, i, :, j])
            left ^= hit
    return (dx,)


def patch_pool(model) -> None:
    from nnctl.layers.pool import _Pool

    for node in model.nodes:
        if isinstance(node.layer, _Pool):
            orig = node.layer.backward
            node.layer.backward = types.MethodType(
                lambda self, g, cache, _o=orig: _pool_backward_fast(self, g, cache, _o), node.layer)


def patch_relu(model) -> None:
    xp = B.xp
    for node in model.nodes[:-1]:  # the last node's pre-activation is the logits the fused loss reads
        act = node.activation
        if act is None or str(act.activation).lower() != "relu":
            continue

        def forward(x, _xp=xp):
            _xp.maximum(x, 0, out=x)  # x is this node's own fresh layer output
            return x, (x, x)  # relu'(x) = (y > 0), so y stands in for x

        act.forward = forward


def _conv_forward_infer(self, x, training=False, mask=None, _orig=None):
    if training or (self._k == (1, 1) and self._s == (1, 1)):
        return _orig(x, training=training, mask=mask)
    from nnctl.ops import im2col as K

    xp = B.xp
    xpad = K.pad(self._image(x), self._pads)
    n, c = xpad.shape[0], xpad.shape[3]
    per_sample = self._out[0] * self._out[1] * self._k[0] * self._k[1] * c
    chunk = max(1, min(n, (64 << 20) // (per_sample * x.dtype.itemsize)))
    buf = getattr(self, "_infer_buf", None)
    if buf is None or buf.size < chunk * per_sample or buf.dtype != x.dtype:
        buf = self._infer_buf = xp.empty(chunk * per_sample, dtype=x.dtype)
    rows = self._out[0] * self._out[1]
    kern = self.params["kernel"].reshape(-1, self.filters)
    y = xp.empty((n * rows, self.filters), dtype=x.dtype)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        cols = K.im2col(xpad[s:e], self._k, self._s, self._d, self._out, out=buf[:(e - s) * per_sample])
        xp.matmul(cols, kern, out=y[s * rows:e * rows])
    if self.use_bias:
        y += self.params["bias"]
    return y.reshape(n, *self._out[2 - self.rank:], self.filters), None


def patch_convinfer(model) -> None:
    from nnctl.layers.conv import _Conv

    for node in model.nodes:
        if isinstance(node.layer, _Conv):
            orig = node.layer.forward
            node.layer.forward = types.MethodType(
                lambda self, x, training=False, mask=None, _o=orig: _conv_forward_infer(self, x, training, mask, _o),
                node.layer)


def patch_inputgrad(model) -> None:
    from nnctl.graph import INPUT
    from nnctl.layers.conv import _Conv
    from nnctl.layers.core import Dense

    first = model.nodes[0]
    if any(name != INPUT for name, _ in first.refs):
        return
    layer = first.layer
    xp = B.xp
    if isinstance(layer, Dense):
        def backward(g, x, _l=layer):
            x2, g2 = x.reshape(-1, x.shape[-1]), g.reshape(-1, g.shape[-1])
            xp.matmul(x2.T, g2, out=_l.grads["kernel"])
            if _l.use_bias:
                g2.sum(axis=0, out=_l.grads["bias"])
            return (None,)
        layer.backward = backward
    elif isinstance(layer, _Conv):
        def backward(g, cache, _l=layer):
            cols, buf, _, _ = cache
            f = _l.filters
            g2 = g.reshape(-1, f)
            xp.matmul(cols.T, g2, out=_l.grads["kernel"].reshape(-1, f))
            _l._spare = buf
            if _l.use_bias:
                xp.matmul(xp.ones(g2.shape[0], dtype=g2.dtype), g2, out=_l.grads["bias"])
            return (None,)
        layer.backward = backward


PATCHES = {"malloc": patch_malloc, "pool": patch_pool, "relu": patch_relu, "convinfer": patch_convinfer,
           "inputgrad": patch_inputgrad}


def apply(names, model) -> list[str]:
    done = []
    for name in names:
        name = name.strip()
        if not name:
            continue
        if name not in PATCHES:
            raise SystemExit(f"--patch: unknown {name!r}; expected {', '.join(PATCHES)}")
        PATCHES[name](model)
        done.append(name)
    return done


def check_same(model_name: str = "cnn", batch: int = 16) -> None:
    """The patched model gives the same forward output and gradients as the unpatched one."""
    import run as bench

    x, y = bench.make_data(model_name, batch)
    results = []
    for names in ([], list(PATCHES)):
        net, trainer = bench.nnctl_model(model_name, batch)
        apply(names, net)
        p = net.predict(x, batch_size=batch)
        trainer.loss_and_grad(B.asarray(x), B.asarray(y))
        results.append((p, B.to_numpy(net.flat_grads).copy()))
    (p0, g0), (p1, g1) = results
    print(f"{model_name}: predict max |diff| {np.abs(p0 - p1).max():.3g}, gradient max |diff| {np.abs(g0 - g1).max():.3g}")
