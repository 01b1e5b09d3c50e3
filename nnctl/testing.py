"""Finite-difference gradient checks for layers and losses (used by the test suite, float64).

The check contracts the layer output with a fixed random tensor r, L = sum(r * y), so dL/dy = r;
the analytic gradients from ``backward(r)`` are compared with central differences
(L(w + h e) - L(w - h e)) / 2h, element by element for small tensors and along random directions
for large ones.
"""

from __future__ import annotations

import numpy as np

from nnctl import backend as B
from nnctl.layers.base import BuildContext


def build_layer(layer, input_shapes, dtype=np.float64, init_rng=None, rng=None, input_grads_needed=None):
    """Build ``layer`` alone on sample shapes ``input_shapes`` (no batch axis) as a model would: weights from
    ``init_rng``, masks and noise from ``rng`` (both ``default_rng(0)`` when None), every input gradient
    needed unless ``input_grads_needed`` says otherwise; returns the output shape."""
    shapes = [tuple(s) for s in input_shapes]
    ctx = BuildContext(
        rng=np.random.default_rng(0) if rng is None else rng,
        init_rng=np.random.default_rng(0) if init_rng is None else init_rng,
        dtype=np.dtype(dtype),
        input_grads_needed=tuple(input_grads_needed) if input_grads_needed is not None else (True,) * len(shapes),
        name=layer.name,
    )
    return layer.build(shapes, ctx)


def _as_list(y):
    return list(y) if isinstance(y, (list, tuple)) else [y]


def _loss(layer, inputs, rs, training, mask, start):
    layer.rng.bit_generator.state = start  # the same dropout masks in every evaluation
    y, _ = layer.forward(*inputs, training=training, mask=mask)
    return float(sum(B.to_numpy((r * yi).sum()) for r, yi in zip(rs, _as_list(y)) if r is not None))


def _numeric(f, arr, rng, max_elems, h):
    """Central-difference gradient of f() w.r.t. arr (host or device, perturbed in place), or directional
    derivatives along random directions when arr is large."""
    flat = arr.reshape(-1)  # a view: arrays under test are contiguous
    if flat.size <= max_elems:
        out = np.zeros(flat.size)
        for i in range(flat.size):
            old = float(flat[i])
            flat[i] = old + h
            fp = f()
            flat[i] = old - h
            fm = f()
            flat[i] = old
            out[i] = (fp - fm) / (2 * h)
        return out.reshape(arr.shape), None
    dirs = [rng.normal(size=flat.size) for _ in range(3)]
    derivs = []
    for d in dirs:
        step = B.asarray(h * d)
        old = flat.copy()
        flat += step
        fp = f()
        flat[:] = old - step
        fm = f()
        flat[:] = old
        derivs.append((fp - fm) / (2 * h))
    return None, (dirs, derivs)


def check_layer(
    layer,
    input_shapes,
    seed=0,
    training=False,
    mask=None,
    int_inputs=(),
    int_high=5,
    max_elems=400,
    h=1e-6,
    rtol=1e-5,
    atol=1e-7,
):
    """Build ``layer`` in float64, check every input and parameter gradient; returns the max error.

    ``int_inputs`` lists input positions that are integer ids (no gradient); ``mask`` is an optional
    (N, T) boolean padding mask passed to forward.
    """
    rng = np.random.default_rng(seed)
    mask = None if mask is None else B.asarray(mask)
    out_shape = build_layer(layer, [s[1:] for s in input_shapes], np.float64, rng, np.random.default_rng(seed + 2))
    for k in list(layer.params):
        layer.params[k] = B.asarray(layer.params[k].astype(np.float64))
    for k in list(layer.state):
        layer.state[k] = B.asarray(layer.state[k].astype(np.float64))
    layer.init_grads()
    inputs = []
    for i, s in enumerate(input_shapes):
        if i in int_inputs:
            inputs.append(B.asarray(rng.integers(0, int_high, size=s)))
        else:
            inputs.append(B.asarray(rng.normal(size=s)))
    start = np.random.default_rng(seed + 2).bit_generator.state  # the generator's state before any draw
    layer.rng.bit_generator.state = start
    y, cache = layer.forward(*inputs, training=training, mask=mask)
    ys = _as_list(y)
    shapes = out_shape if isinstance(out_shape, list) else [out_shape]
    for yi, s in zip(ys, shapes):
        assert tuple(yi.shape[1:]) == tuple(s), f"forward shape {yi.shape[1:]} != build shape {tuple(s)}"
    rs = [B.asarray(rng.normal(size=yi.shape)) for yi in ys]
    grad = rs if isinstance(y, (list, tuple)) else rs[0]
    in_grads = layer.backward(grad, cache)
    assert len(in_grads) == len(inputs), "backward must return one gradient per input"
    f = lambda: _loss(layer, inputs, rs, training, mask, start)  # noqa: E731
    worst = 0.0
    targets = [(f"input{i}", x, g) for i, (x, g) in enumerate(zip(inputs, in_grads)) if i not in int_inputs]
    targets += [(k, layer.params[k], layer.grads[k]) for k in layer.params]
    for name, arr, analytic in targets:
        assert analytic is not None, f"{name}: backward returned no gradient"
        full, directional = _numeric(f, arr, rng, max_elems, h)
        a = B.to_numpy(analytic)
        if full is not None:
            err = np.abs(full - a)
            scale = atol + rtol * np.maximum(np.abs(full), np.abs(a)).max()
            bad = err.max() if err.size else 0.0
            assert bad <= max(scale, 1e-5 * max(1.0, np.abs(full).max())), (
                f"{type(layer).__name__} d/d{name}: max |numeric - analytic| = {bad:.3g} "
                f"(numeric {full.ravel()[:4]}, analytic {a.ravel()[:4]})"
            )
            worst = max(worst, bad)
        else:
            dirs, derivs = directional
            for d, num in zip(dirs, derivs):
                ana = float((a.reshape(-1) * d).sum())
                bad = abs(num - ana)
                assert bad <= 1e-5 * max(1.0, abs(num)), (
                    f"{type(layer).__name__} d/d{name} along a direction: {num} vs {ana}"
                )
                worst = max(worst, bad)
    return worst
