#!/usr/bin/env python
"""Where one nnctl training (or predict) step spends its time: ms per step for every layer's forward and
backward, the loss and the optimizer, on the benchmark models of benchmarks/common.py.

    .venv/bin/python benchmarks/profile_step.py --model mlp|cnn|lstm|mnist_cnn|cifar_cnn|gru|transformer
                                                [--batch N] [--steps 50] [--predict] [--cprofile]
    .venv/bin/python benchmarks/profile_step.py --model cnn --ab pool-legacy [--blocks 12] [--steps 5]

``--ab NAME`` times today's code (A) against a variant of benchmarks/ab_variants.py (B) in one process on
one model: alternating blocks of training steps (the order flipped every block), the median per-step time
of each and the median of the per-block ratios B/A with its quartiles, after checking that one step from
the same weights gives the same gradients both ways.

The timing itself is nnctl.timing (what ``nnctl time SPEC`` runs); this script feeds it the benchmark
models and their data, one fresh batch per step as Trainer.run_epoch gathers them. For line-level detail
inside a layer run it under py-spy:

    .venv/bin/py-spy record -r 250 -f raw -o /tmp/cnn.txt -- .venv/bin/python benchmarks/profile_step.py --model cnn
    .venv/bin/python benchmarks/profile_step.py --collapse /tmp/cnn.txt      # self time per nnctl source line
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as bench  # benchmarks/common.py: models, data, the nnctl builder


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mlp", choices=tuple(bench.NNCTL_LAYERS))
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--predict", action="store_true", help="profile Model.predict at batch 1024 instead")
    ap.add_argument("--cprofile", action="store_true", help="also print cProfile's top functions by self time")
    ap.add_argument("--collapse", default=None, help="summarise a py-spy raw profile by nnctl source line")
    ap.add_argument(
        "--within",
        default="profile.<locals>.step (",
        help="with --collapse: count only stacks through one of these ';'-separated frames "
        "(default: the timed training step)",
    )
    ap.add_argument(
        "--ms-per-step",
        type=float,
        default=None,
        help="with --collapse: also print ms per step, scaling the fractions by this step time",
    )
    ap.add_argument("--ab", default=None, help="A/B today's code against a variant of benchmarks/ab_variants.py")
    ap.add_argument("--blocks", type=int, default=12, help="with --ab: alternating blocks per side")
    args = ap.parse_args(argv)
    if args.collapse:
        return collapse(args.collapse, args.within, args.ms_per_step)
    if args.ab:
        return ab(args.model, args.ab, args.batch, args.steps or 5, args.blocks)

    import numpy as np

    from nnctl.timing import profile

    model = args.model
    batch = args.batch or (1024 if args.predict else bench.BATCH[model])
    steps = args.steps or {"mlp": 200, "cnn": 30, "lstm": 60}[model] // (4 if args.predict else 1)
    x, y = bench.make_data(model, batch * max(steps, 8))
    net, trainer = bench.nnctl_model(model, batch)
    order = np.random.default_rng(0).permutation(len(x))

    def batch_at(b):
        idx = order[(b * batch) % len(x) :][:batch]
        idx = idx if len(idx) == batch else order[:batch]
        return np.take(x, idx, axis=0), np.take(y, idx, axis=0)

    prof = None
    if args.cprofile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    result = profile(net, trainer, batch_at, steps, warmup=3, predict=args.predict).to_dict()
    if prof is not None:
        prof.disable()
    step = result["step_ms"]
    what = "predict batch" if args.predict else "training step"
    print(
        f"{model}: {steps} x {what} of {batch}: {step:.2f} ms per step ({result['samples_per_second']:,.0f} samples/s)"
    )
    rows = [(r["forward_ms"], f"{i}:{r['name']} ({r['type']}) forward") for i, r in enumerate(result["layers"])]
    rows += [
        (r["backward_ms"], f"{i}:{r['name']} ({r['type']}) backward")
        for i, r in enumerate(result["layers"])
        if not args.predict
    ]
    rows += [
        (v, k.removesuffix("_ms"))
        for k, v in result.items()
        if k.endswith("_ms") and k not in ("step_ms", "forward_ms", "backward_ms", "other_ms")
    ]
    for ms, key in sorted(rows, key=lambda r: -r[0]):
        print(f"  {ms:8.3f} ms  {100 * ms / step:5.1f}%  {key}")
    print(
        f"  {result['other_ms']:8.3f} ms  {100 * result['other_ms'] / step:5.1f}%  "
        f"(Model.forward/backward bookkeeping, loop)"
    )
    if prof is not None:
        import pstats

        pstats.Stats(prof).sort_stats("tottime").print_stats(18)
    return 0


def ab(model: str, name: str, batch: int | None, steps: int, blocks: int) -> int:
    """Same-process A/B of today's code against ab_variants.VARIANTS[name] on training steps of ``model``."""
    import statistics
    import time

    import ab_variants
    import numpy as np

    from nnctl import backend as B

    variant = ab_variants.VARIANTS[name]
    batch = batch or bench.BATCH[model]
    x, y = bench.make_data(model, batch * 8)
    net, trainer = bench.nnctl_model(model, batch)
    opt, lr = trainer.optimizer, float(trainer.schedule.lr(0))
    batches = [(x[b * batch : (b + 1) * batch], y[b * batch : (b + 1) * batch]) for b in range(8)]

    def grads(on: bool):
        variant(on)
        try:
            trainer.loss_and_grad(*batches[0])
            return B.to_numpy(net.flat_grads).copy()
        finally:
            variant(False)

    ga, gb = grads(False), grads(True)
    scale = float(np.abs(ga).max()) or 1.0
    print(
        f"{model} batch {batch}, variant {name}: max |grad A - grad B| = {np.abs(ga - gb).max():.3g} (max |grad| {scale:.3g})"
    )

    def block(on: bool) -> tuple[float, float]:
        """(wall, CPU) ms per step; on a shared machine CPU time is the steadier measure of the work."""
        variant(on)
        try:
            t0, c0 = time.perf_counter(), time.process_time()
            for s in range(steps):
                trainer.loss_and_grad(*batches[s % len(batches)])
                opt.step(net.flat_params, net.flat_grads, net.slices.values(), lr=lr)
            return (time.perf_counter() - t0) / steps * 1e3, (time.process_time() - c0) / steps * 1e3
        finally:
            variant(False)

    block(False), block(True)  # warm both paths (buffers, page faults)
    a_ms, b_ms = [], []
    for k in range(blocks):
        for on in (False, True) if k % 2 == 0 else (True, False):
            (b_ms if on else a_ms).append(block(on))
    for what, col in (("wall", 0), ("CPU", 1)):
        ratios = sorted(b[col] / a[col] for a, b in zip(a_ms, b_ms))
        q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
        print(
            f"  {what:<4} A (today) {statistics.median(a[col] for a in a_ms):.2f} ms/step, B ({name}) "
            f"{statistics.median(b[col] for b in b_ms):.2f} ms/step; B/A median {statistics.median(ratios):.3f} "
            f"(quartiles {q[0]:.3f}-{q[2]:.3f}) over {blocks} blocks of {steps} steps"
        )
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
