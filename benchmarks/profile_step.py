#!/usr/bin/env python
"""Where one nnctl training (or predict) step spends its time: ms per step for every layer's forward and
backward, each activation, the loss and the optimizer, on the benchmark models of benchmarks/common.py.

    .venv/bin/python benchmarks/profile_step.py --model mlp|cnn|lstm [--steps 50] [--predict] [--cprofile]

It times a thin loop that does what Trainer.run_epoch does per batch (gather, loss_and_grad,
optimizer.step) with a perf_counter around every node's calls (instance wrappers, nothing in nnctl is
edited). For line-level detail inside a layer run it under py-spy:

    .venv/bin/py-spy record -r 250 -f raw -o /tmp/cnn.txt -- .venv/bin/python benchmarks/profile_step.py --model cnn
    .venv/bin/python benchmarks/profile_step.py --collapse /tmp/cnn.txt      # self time per nnctl source line
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as bench  # benchmarks/common.py: models, data, the nnctl builder

TIMES: collections.Counter = collections.Counter()
CALLS: collections.Counter = collections.Counter()


def timed(key, fn):
    def wrapper(*a, **kw):
        t = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            TIMES[key] += time.perf_counter() - t
            CALLS[key] += 1
    return wrapper


def instrument(net, trainer):
    for i, node in enumerate(net.nodes):
        name = f"{i}:{node.name} ({type(node.layer).__name__})"
        node.layer.forward = timed(f"{name} forward", node.layer.forward)
        node.layer.backward = timed(f"{name} backward", node.layer.backward)
        if node.activation is not None:
            act = node.activation
            act.forward = timed(f"{name} {act.activation} forward", act.forward)
            act.backward = timed(f"{name} {act.activation} backward", act.backward)
    loss = trainer.loss
    loss.fused_value_grad = timed("loss fused value+grad", loss.fused_value_grad)
    loss.value = timed("loss value", loss.value)
    loss.grad = timed("loss grad", loss.grad)
    trainer.optimizer.step = timed("optimizer step (Adam, flat buffers)", trainer.optimizer.step)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mlp", choices=("mlp", "cnn", "lstm"))
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--predict", action="store_true", help="profile Model.predict at batch 1024 instead")
    ap.add_argument("--cprofile", action="store_true", help="also print cProfile's top functions by self time")
    ap.add_argument("--collapse", default=None, help="summarise a py-spy raw profile by nnctl source line")
    ap.add_argument("--within", default="main.<locals>.step (",
                    help="with --collapse: count only stacks through one of these ';'-separated frames "
                         "(default: the timed training step)")
    ap.add_argument("--ms-per-step", type=float, default=None,
                    help="with --collapse: also print ms per step, scaling the fractions by this step time")
    args = ap.parse_args(argv)
    if args.collapse:
        return collapse(args.collapse, args.within, args.ms_per_step)

    import numpy as np

    from nnctl import backend as B

    model = args.model
    batch = args.batch or (1024 if args.predict else bench.BATCH[model])
    steps = args.steps or {"mlp": 200, "cnn": 30, "lstm": 60}[model] // (4 if args.predict else 1)
    x, y = bench.make_data(model, batch * max(steps, 8))
    net, trainer = bench.nnctl_model(model, batch)
    opt = trainer.optimizer
    order = np.random.default_rng(0).permutation(len(x))
    xbuf = np.empty((batch, *x.shape[1:]), dtype=x.dtype)
    ybuf = np.empty((batch, *y.shape[1:]), dtype=y.dtype)

    def step(b):
        idx = order[(b * batch) % len(x):][:batch]
        if len(idx) < batch:
            idx = order[:batch]
        t = time.perf_counter()
        np.take(x, idx, axis=0, out=xbuf)
        np.take(y, idx, axis=0, out=ybuf)
        xb, yb = B.asarray(xbuf, dtype=net.input_dtype), B.asarray(ybuf)
        TIMES["gather batch"] += time.perf_counter() - t
        if args.predict:
            net.forward(xb, training=False)
            net._caches = []
            return
        trainer.loss_and_grad(xb, yb)
        opt.step(net.flat_params, net.flat_grads, net.slices.values(), lr=1e-3)

    for b in range(3):  # warm-up: buffers, page faults
        step(b)
    instrument(net, trainer)
    TIMES.clear()
    CALLS.clear()
    prof = None
    if args.cprofile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    t0 = time.perf_counter()
    for b in range(steps):
        step(b)
    wall = time.perf_counter() - t0
    if prof is not None:
        prof.disable()
    per = wall / steps
    what = "predict batch" if args.predict else "training step"
    print(f"{model}: {steps} x {what} of {batch}: {1000 * per:.2f} ms per step "
          f"({batch / per:,.0f} samples/s)")
    accounted = 0.0
    # outer keys only (layer calls do not nest in one another; activations run beside their layer)
    for key, t in sorted(TIMES.items(), key=lambda kv: -kv[1]):
        accounted += t
        print(f"  {1000 * t / steps:8.3f} ms  {100 * t / wall:5.1f}%  {key}")
    rest = wall - accounted
    print(f"  {1000 * rest / steps:8.3f} ms  {100 * rest / wall:5.1f}%  (Model.forward/backward bookkeeping, loop)")
    if prof is not None:
        import pstats

        pstats.Stats(prof).sort_stats("tottime").print_stats(18)
    return 0


def collapse(path: str, within: str = "", ms_per_step: float | None = None) -> int:
    """Self samples per innermost nnctl/benchmarks frame (file:line) in a py-spy raw (collapsed) profile."""
    per_line: collections.Counter = collections.Counter()
    per_func: collections.Counter = collections.Counter()
    total = 0
    keys = [k for k in within.split(";") if k] if within else []
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        if keys and not any(k in stack for k in keys):
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        mine = [f for f in frames if "nnctl/" in f or "benchmarks/" in f]
        leaf = mine[-1] if mine else frames[-1]
        per_line[leaf] += n
        func = leaf.split(" (")[0]
        per_func[func] += n
    print(f"{total} samples" + (f" in stacks through {within!r}" if keys else ""))
    for leaf, n in per_line.most_common(25):
        ms = f"{ms_per_step * n / total:7.3f} ms  " if ms_per_step else ""
        print(f"  {ms}{100 * n / total:5.1f}%  {leaf}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
