#!/usr/bin/env python
"""Recurrent layers alone: a fingerprint of their outputs and gradients (to show a refactor changes no bit), and
ms per training step of one layer (forward + backward), for A/B runs of two source trees in fresh processes.

    .venv/bin/python benchmarks/rnn_bench.py fingerprint OUT.npz          # every cell, mask, direction, dtype
    .venv/bin/python benchmarks/rnn_bench.py compare A.npz B.npz          # exit 1 unless bit-identical
    .venv/bin/python benchmarks/rnn_bench.py time --layer LSTM [--units 64 --batch 64 --steps 50 --features 8]
    .venv/bin/python benchmarks/rnn_bench.py ab --baseline TREE|torch|off[,...] [--layer LSTM] [--repeats 5]

``ab`` alternates fresh processes of this tree and of each baseline: a TREE (``git archive <commit> | tar -x
-C TREE``), PyTorch's nn.LSTM / nn.GRU / nn.RNN (``torch``), or this tree with the compiled kernels off
(``off``, NNCTL_KERNELS=0), each timing ``time``'s loop, and prints the medians; run it with
OPENBLAS_NUM_THREADS=1 on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CASES = [  # (layer type, config, (T, F), batch, with initial states)
    ("LSTM", {"units": 6}, (5, 3), 7, False),
    ("LSTM", {"units": 64}, (6, 8), 64, False),  # row pieces (rnn_cells.row_parts) in use
    ("LSTM", {"units": 5, "return_sequences": True, "go_backwards": True}, (6, 3), 9, False),
    ("LSTM", {"units": 5, "return_state": True, "return_sequences": True}, (4, 3), 6, True),
    ("LSTM", {"units": 4, "activation": "relu", "recurrent_activation": "hard_sigmoid"}, (5, 3), 6, False),
    ("LSTM", {"units": 4, "dropout": 0.3, "return_sequences": True}, (5, 3), 6, False),
    ("GRU", {"units": 6}, (5, 3), 7, False),
    ("GRU", {"units": 64, "return_sequences": True}, (6, 8), 64, False),
    ("GRU", {"units": 5, "return_state": True, "go_backwards": True}, (4, 3), 6, True),
    ("GRU", {"units": 4, "activation": "relu", "use_bias": False}, (5, 3), 6, False),
    ("SimpleRNN", {"units": 6, "return_sequences": True}, (5, 3), 7, False),
    ("SimpleRNN", {"units": 5, "return_state": True, "activation": "relu"}, (4, 3), 6, True),
    ("Bidirectional", {"layer": {"type": "LSTM", "units": 5, "return_sequences": True}}, (5, 3), 6, False),
    ("Bidirectional", {"layer": {"type": "GRU", "units": 4}, "merge_mode": "sum"}, (5, 3), 6, False),
]


def _layer(type_name, config, in_shapes, dtype, seed=0):
    from nnctl import backend as B
    from nnctl.layers import layer_class
    from nnctl.testing import build_layer

    layer = layer_class(type_name)(name="l", **config)
    build_layer(layer, in_shapes, dtype=dtype, init_rng=np.random.default_rng(seed), rng=np.random.default_rng(seed))
    layer.params = {k: B.asarray(v.astype(dtype)) for k, v in layer.params.items()}
    layer.init_grads()
    return layer


def _as_list(y):
    return list(y) if isinstance(y, (list, tuple)) else [y]


def fingerprint(out: str) -> int:
    """Outputs, input gradients and parameter gradients of every CASES entry (masked and not, two dtypes)."""
    from nnctl import backend as B

    arrays = {}
    for c, (type_name, config, (T, F), N, with_states) in enumerate(CASES):
        for dtype in (np.float32, np.float64):
            for masked in (False, True):
                rng = np.random.default_rng(c)
                units = config.get("units") or config["layer"]["units"]
                n_states = (
                    (2 if "LSTM" in (type_name, config.get("layer", {}).get("type")) else 1) if with_states else 0
                )
                shapes = [(T, F)] + [(units,)] * n_states
                layer = _layer(type_name, config, shapes, dtype)
                xs = [rng.standard_normal((N, *s)).astype(dtype) for s in shapes]
                mask = None
                if masked:
                    mask = np.ones((N, T), bool)
                    mask[::3, -2:] = False
                    mask[1::4, :1] = False
                for rep in range(2):  # the second pass reuses the pooled tape buffers
                    y, cache = layer.forward(*map(B.asarray, xs), training=True, mask=mask)
                    ys = [B.to_numpy(v) for v in _as_list(y)]
                    gs = [
                        np.random.default_rng(100 + i).standard_normal(v.shape).astype(dtype) for i, v in enumerate(ys)
                    ]
                    dxs = layer.backward(gs if len(gs) > 1 else gs[0], cache)
                    key = f"{c}:{type_name}:{np.dtype(dtype).name}:{'m' if masked else '-'}:{rep}"
                    for i, v in enumerate(ys):
                        arrays[f"{key}:y{i}"] = v
                    for i, v in enumerate(_as_list(dxs)):
                        if v is not None:
                            arrays[f"{key}:dx{i}"] = B.to_numpy(v)
                    for k, v in layer.grads.items():
                        arrays[f"{key}:d{k}"] = B.to_numpy(v).copy()
    np.savez(out, **arrays)
    print(f"{len(arrays)} arrays -> {out}")
    return 0


def compare(a: str, b: str) -> int:
    A, Bz = np.load(a), np.load(b)
    keys = sorted(set(A.files) | set(Bz.files))
    bad = [k for k in keys if k not in A.files or k not in Bz.files or not np.array_equal(A[k], Bz[k])]
    for k in bad[:20]:
        if k in A.files and k in Bz.files:
            print(f"differs: {k}: max |a-b| = {np.max(np.abs(A[k] - Bz[k])):.3g}")
        else:
            print(f"missing on one side: {k}")
    rel = [
        float(np.max(np.abs(A[k] - Bz[k])) / max(float(np.max(np.abs(A[k]))), 1e-30))
        for k in bad
        if k in A.files and k in Bz.files and A[k].shape == Bz[k].shape
    ]
    print(f"{len(keys) - len(bad)}/{len(keys)} arrays bit-identical; largest difference {max(rel, default=0):.3g}")
    return 1 if bad else 0


def time_layer(
    type_name: str, units: int, batch: int, steps: int, features: int, reps: int, seq: bool, infer: bool = False
) -> dict:
    """Median ms of one training step of the layer alone (forward in training, backward), as the model's
    first layer (no input gradient), float32; ``infer``: of one inference forward instead (predict)."""
    from nnctl import backend as B

    layer = _layer(type_name, {"units": units, "return_sequences": seq}, [(steps, features)], np.float32)
    layer.input_grads_needed = [False]
    rng = np.random.default_rng(0)
    x = B.asarray(rng.standard_normal((batch, steps, features)).astype(np.float32))
    y, _ = layer.forward(x)
    g = B.asarray(rng.standard_normal(y.shape).astype(np.float32))
    times, cpu = [], []
    for _ in range(3 + reps):
        t0, c0 = time.perf_counter(), time.process_time()
        if infer:
            layer.forward(x)
        else:
            y, cache = layer.forward(x, training=True)
            layer.backward(g, cache)
            del cache
        times.append(1e3 * (time.perf_counter() - t0))
        cpu.append(1e3 * (time.process_time() - c0))
    return {"ms": statistics.median(times[3:]), "best": min(times[3:]), "cpu_ms": statistics.median(cpu[3:])}


def time_torch(
    type_name: str, units: int, batch: int, steps: int, features: int, reps: int, seq: bool, infer: bool = False
) -> dict:
    """The same measurement for PyTorch's nn.LSTM / nn.GRU / nn.RNN (one thread): forward and backward of
    sum(g * y), as the layer's first layer (no input gradient); ``infer``: a forward under no_grad."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = {"LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU, "SimpleRNN": torch.nn.RNN}[type_name](
        features, units, batch_first=True
    )
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((batch, steps, features)).astype(np.float32))
    shape = (batch, steps, units) if seq else (batch, units)
    g = torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
    times, cpu = [], []
    for _ in range(3 + reps):
        t0, c0 = time.perf_counter(), time.process_time()
        if infer:
            with torch.no_grad():
                net(x)
        else:
            net.zero_grad()
            y = net(x)[0]
            ((y if seq else y[:, -1]) * g).sum().backward()
        times.append(1e3 * (time.perf_counter() - t0))
        cpu.append(1e3 * (time.process_time() - c0))
    return {"ms": statistics.median(times[3:]), "best": min(times[3:]), "cpu_ms": statistics.median(cpu[3:])}


def ab(args) -> int:
    """Alternate fresh processes of this tree and each baseline (comma-separated): a source tree, ``torch``
    (PyTorch's layer) or ``off`` (this tree with NNCTL_KERNELS=0: the NumPy path the compiled kernels replace)."""
    here = str(Path(__file__).resolve().parents[1])
    trees = {"this": (here, {}, [])}
    for b in args.baseline.split(","):
        if b == "torch":
            trees["torch"] = (here, {}, ["--torch"])
        elif b == "off":
            trees["kernels off"] = (here, {"NNCTL_KERNELS": "0"}, [])
        else:
            trees[b] = (str(Path(b).resolve()), {}, [])
    res: dict[str, list[float]] = {k: [] for k in trees}
    cpu: dict[str, list[float]] = {k: [] for k in trees}
    for r in range(args.repeats):
        for name in list(trees)[:: 1 if r % 2 == 0 else -1]:
            tree, extra_env, extra = trees[name]
            env = dict(os.environ, PYTHONPATH=tree, **extra_env)
            cmd = [sys.executable, __file__, "time", "--layer", args.layer, "--units", str(args.units)]
            cmd += ["--batch", str(args.batch), "--steps", str(args.steps), "--features", str(args.features)]
            cmd += ["--reps", str(args.reps), "--json"] + (["--seq"] if args.seq else []) + extra
            cmd += ["--infer"] if args.infer else []
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, cwd="/tmp").stdout
            got = json.loads(out.strip().splitlines()[-1])
            res[name].append(got["ms"])
            cpu[name].append(got["cpu_ms"])
    med = {k: statistics.median(v) for k, v in res.items()}
    mcpu = {k: statistics.median(v) for k, v in cpu.items()}
    for k, v in res.items():
        print(
            f"{k:12s} median {med[k]:7.2f} ms wall, {mcpu[k]:7.2f} ms CPU; wall runs {' '.join(f'{x:.2f}' for x in v)}"
        )
    for k in list(trees)[1:]:
        print(f"this/{k} = {med['this'] / med[k]:.3f} wall, {mcpu['this'] / mcpu[k]:.3f} CPU")
    print(f"(load average {os.getloadavg()[0]:.1f})")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fingerprint")
    f.add_argument("out")
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    for p in (sub.add_parser("time"), sub.add_parser("ab")):
        p.add_argument("--layer", default="LSTM", choices=("LSTM", "GRU", "SimpleRNN"))
        p.add_argument("--units", type=int, default=64)
        p.add_argument("--batch", type=int, default=64)
        p.add_argument("--steps", type=int, default=50)
        p.add_argument("--features", type=int, default=8)
        p.add_argument("--reps", type=int, default=30)
        p.add_argument("--seq", action="store_true", help="return_sequences")
        p.add_argument("--infer", action="store_true", help="time an inference forward (predict), not a training step")
        if p.prog.endswith("time"):
            p.add_argument("--json", action="store_true")
            p.add_argument("--torch", action="store_true", help="time PyTorch's layer instead")
        else:
            p.add_argument(
                "--baseline",
                required=True,
                help="comma-separated: a source tree, 'torch' (PyTorch's layer), 'off' (this tree, NNCTL_KERNELS=0)",
            )
            p.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    if args.cmd == "fingerprint":
        return fingerprint(args.out)
    if args.cmd == "compare":
        return compare(args.a, args.b)
    if args.cmd == "ab":
        return ab(args)
    timer = time_torch if args.torch else time_layer
    r = timer(args.layer, args.units, args.batch, args.steps, args.features, args.reps, args.seq, args.infer)
    print(
        json.dumps(r)
        if args.json
        else f"{args.layer}({args.units}) batch {args.batch} x {args.steps}: {r['ms']:.2f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
