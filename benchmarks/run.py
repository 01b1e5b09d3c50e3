#!/usr/bin/env python
"""nnctl against PyTorch CPU, Keras 3 (and a pure-NumPy floor) on the same synthetic data, in one run.

    .venv/bin/python benchmarks/run.py [--quick] [--repeats 3]
                                       [--only mlp,cnn,lstm,mnist,cifar,gru,transformer,predict,startup,knobs]
                                       [--json results.json] [--threads N] [--samples N]
                                       [--baseline TREE] [--mallopt-ab]

--baseline TREE adds the contender nnctl-before (this benchmark code importing the nnctl of another source
tree, alternating with the others: a before/after table from one run); --mallopt-ab adds nnctl-no-mallopt (without the CLI's
backend.keep_freed_memory() call). See benchmarks/README.md.

--quick shrinks every size and uses one repeat and one BLAS/OpenMP thread (unless --threads is given),
so it finishes in well under a minute even on a busy machine; its numbers are a smoke test, not a result.
See docs/performance.md for the results, what users can set, and the profiles.

Every measurement runs in a fresh child process (``--worker``), so contenders never share a heap, a
thread pool or spinning OpenMP/OpenBLAS threads, and each child's peak resident memory is its own
(read with os.wait4, the per-child form of getrusage(RUSAGE_CHILDREN)). Within each repeat the
contenders alternate, in an order rotated every repeat; the table shows medians over the repeats.
Import time and data generation are outside the timed region; one short warm-up run precedes it.

Rows:
  mlp      784-256-128-10 (relu, softmax), Adam 1e-3, batch 128, one 60k-sample epoch, sparse CE
  cnn      Conv2D(32,3)-Conv2D(64,3)-MaxPool(2)-Flatten-Dense(128)-Dense(10) on 28x28x1, batch 128,
           time per 10k samples; its peak RSS is the memory row
  lstm     LSTM(64)->Dense(1) on (50, 8) sequences, Adam, batch 64, mse, time per 10k samples
  mnist    the notes' MNIST CNN, Conv2D(64,3)-MaxPool(2)-Conv2D(32,3)-Flatten-Dense(10) on 28x28x1, at batch
           32 and at batch 128 (two rows), time per 10k samples
  cifar    the notes' 32x32x3 CNN, Conv2D(32,3)-Conv2D(64,3)-MaxPool(2)-Conv2D(128,3)-MaxPool(2)-Flatten-
           Dense(64)-Dense(10), batch 32, time per 10k samples
  gru      GRU(64)->Dense(1), as the LSTM row
  transformer  Embedding(1000, 64) + PositionEmbedding, one post-norm encoder block (2 heads x 32, feed-
           forward 128), GlobalAveragePooling1D, Dense(2); 32-token sequences, batch 64, per 10k samples
  predict  inference throughput at batch 1024 for the MLP and the CNN
  startup  ``nnctl predict CKPT one-row.csv``, process start to exit (plus python/numpy/torch floors)
  knobs    the MLP epoch under user-settable knobs: thread counts, OPENBLAS_CORETYPE, batch size

Contenders: nnctl through its library (spec.validate -> build.build_model -> model.to_device ->
train.Trainer.run_epoch on in-memory arrays; predict via Model.predict), PyTorch CPU (default
torch.set_num_threads; plus Adam(fused=True) on the MLP), Keras 3 on TensorFlow (model.fit for one
epoch after a warm-up fit; training rows only; skipped with a note where not installed), and for the
MLP a pure-NumPy floor (the same network as straight NumPy calls with in-place buffers and Adam over
flat buffers).
FLOPs are analytic: 2*m*n*k per matmul (convolutions as their im2col matmul), x3 for forward+backward
in training, x1 for predict.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    BATCH,
    ENV_KEYS,
    LOSS,
    NNCTL_LAYERS,
    ROOT,
    TRANSFORMER,
    have_keras,
    have_torch,
    keras_model,
    keras_version,
    log,
    make_data,
    nnctl_model,
    run_child,
    set_threads,
    torch_model,
    torch_version,
    worker_main,
)

GROUPS = ("mlp", "cnn", "lstm", "mnist", "cifar", "gru", "transformer", "predict", "startup", "knobs")
# training rows: key -> (group, model of common.py, batch, title); a group may hold several rows
TRAIN_ROWS = {
    "mlp": ("mlp", "mlp", 128, None),  # titled in main (its epoch size)
    "cnn": ("cnn", "cnn", 128, "CNN train"),
    "lstm": ("lstm", "lstm", 64, "LSTM train"),
    "mnist b32": ("mnist", "mnist_cnn", 32, "MNIST CNN train b32"),
    "mnist b128": ("mnist", "mnist_cnn", 128, "MNIST CNN train b128"),
    "cifar": ("cifar", "cifar_cnn", 32, "32x32x3 CNN train b32"),
    "gru": ("gru", "gru", 64, "GRU train"),
    "transformer": ("transformer", "transformer", 64, "Transformer train b64"),
}
MALLOPT_AB = False  # --mallopt-ab: also nnctl without backend.keep_freed_memory() (contender nnctl-no-mallopt)
BASELINE: str | None = None  # --baseline: a source tree (e.g. `git worktree add /tmp/base HEAD~3`) run as nnctl-before


# -- analytic forward FLOPs per sample ------------------------------------------------------------------
def fwd_flops(model: str) -> int:
    """Forward FLOPs per sample: 2*m*n*k per matmul (m = 1 sample's rows)."""
    if model == "mlp":
        return 2 * (784 * 256 + 256 * 128 + 128 * 10)
    if model == "cnn":
        conv1 = 2 * (26 * 26) * (3 * 3 * 1) * 32
        conv2 = 2 * (24 * 24) * (3 * 3 * 32) * 64
        return conv1 + conv2 + 2 * (12 * 12 * 64) * 128 + 2 * 128 * 10
    if model == "mnist_cnn":
        return 2 * (26 * 26) * 9 * 64 + 2 * (11 * 11) * (9 * 64) * 32 + 2 * (11 * 11 * 32) * 10
    if model == "cifar_cnn":
        convs = 2 * (30 * 30) * 27 * 32 + 2 * (28 * 28) * 288 * 64 + 2 * (12 * 12) * 576 * 128
        return convs + 2 * (6 * 6 * 128) * 64 + 2 * 64 * 10
    if model in ("lstm", "gru"):
        gates = 4 if model == "lstm" else 3
        return 50 * 2 * (8 + 64) * (gates * 64) + 2 * 64 * 1
    if model == "transformer":
        t, d, ff = TRANSFORMER["seq"], TRANSFORMER["d_model"], TRANSFORMER["ff"]
        # q, k, v and output projections, scores and their weighted sum (all heads), the feed-forward, head
        return 4 * 2 * t * d * d + 2 * 2 * t * t * d + 2 * 2 * t * d * ff + 2 * d * 2
    raise KeyError(model)


# ======================================================================================================
# worker side: one measurement per process
# ======================================================================================================
def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def _steal_seconds() -> float:
    """Machine-wide CPU time stolen by the hypervisor (other tenants), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


STEAL = [0.0]


def _timed(fn):
    s0, w0, c0 = _steal_seconds(), time.perf_counter(), _cpu_seconds()
    out = fn()
    sec, cpu = time.perf_counter() - w0, _cpu_seconds() - c0
    STEAL[0] = _steal_seconds() - s0
    return sec, cpu, out


# -- nnctl ---------------------------------------------------------------------------------------------
def nnctl_train(model, x, y, batch, warm, mallopt=True):
    _, trainer = nnctl_model(model, batch, mallopt=mallopt)
    trainer.run_epoch(x[:warm], y[:warm])
    sec, cpu, logs = _timed(lambda: trainer.run_epoch(x, y))
    return sec, cpu, logs["loss"]


def nnctl_predict(model, x, batch):
    net, _ = nnctl_model(model, BATCH[model])
    net.predict(x[:batch], batch_size=batch)
    sec, cpu, out = _timed(lambda: net.predict(x, batch_size=batch))
    return sec, cpu, float(out[:, 0].mean())


# -- PyTorch (models: common.torch_model) --------------------------------------------------------------
def _torch_x(model, x):
    import numpy as np
    import torch

    if x.ndim == 4:  # images: NHWC -> NCHW once, outside the timed region
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return torch.from_numpy(x)


def torch_train(model, x, y, batch, warm, fused=False):
    import torch

    net = torch_model(model)
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7, **({"fused": True} if fused else {}))
    crit = torch.nn.MSELoss() if LOSS[model] == "mse" else torch.nn.CrossEntropyLoss()
    xt, yt = _torch_x(model, x), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(0)

    def epoch(n):
        perm = torch.randperm(n, generator=gen)
        losses = []
        for b in range(math.ceil(n / batch)):
            idx = perm[b * batch : (b + 1) * batch]
            xb, yb = xt[idx], yt[idx]
            opt.zero_grad(set_to_none=True)
            loss = crit(net(xb), yb)
            loss.backward()
            opt.step()
            losses.append(loss.detach() * len(idx))
        return float(torch.stack(losses).sum()) / n  # one host read per epoch, as nnctl

    epoch(warm)
    return _timed(lambda: epoch(len(x)))


def torch_predict(model, x, batch):
    import torch

    net = torch_model(model)
    net.eval()
    xt = _torch_x(model, x)

    def run():
        outs = []
        with torch.inference_mode():
            for s in range(0, len(xt), batch):
                outs.append(torch.softmax(net(xt[s : s + batch]), dim=-1))
        return torch.cat(outs).numpy()

    with torch.inference_mode():
        net(xt[:batch])
    sec, cpu, out = _timed(run)
    return sec, cpu, float(out[:, 0].mean())


# -- Keras 3 on TensorFlow (models: common.keras_model) ---------------------------------------------------
def keras_train(model, x, y, batch, warm):
    """model.fit for one epoch, as a Keras user trains: its own shuffle and batching, one compiled step."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    threads = os.environ.get("OMP_NUM_THREADS")
    if threads:  # TensorFlow's own pools ignore the BLAS/OpenMP variables that --threads sets
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(int(threads))
    net = keras_model(model)
    net.fit(x[:warm], y[:warm], batch_size=batch, epochs=1, shuffle=True, verbose=0)  # traces the step
    sec, cpu, hist = _timed(lambda: net.fit(x, y, batch_size=batch, epochs=1, shuffle=True, verbose=0))
    return sec, cpu, float(hist.history["loss"][-1])


# -- pure NumPy floor (MLP) ----------------------------------------------------------------------------
def numpy_train(x, y, batch, warm):
    """The MLP as straight NumPy: in-place matmuls, relu, softmax-CE fused, Adam over one flat buffer."""
    import numpy as np

    f32 = np.float32
    dims = [784, 256, 128, 10]
    sizes = [(dims[i], dims[i + 1]) for i in range(3)]
    total = sum(a * b + b for a, b in sizes)
    P, G = np.zeros(total, f32), np.zeros(total, f32)
    m, v, tmp = np.zeros(total, f32), np.zeros(total, f32), np.empty(total, f32)
    rng = np.random.default_rng(0)
    Ws, bs, gWs, gbs = [], [], [], []
    off = 0
    for a, b in sizes:
        lim = math.sqrt(6.0 / (a + b))
        W, gW = P[off : off + a * b].reshape(a, b), G[off : off + a * b].reshape(a, b)
        W[...] = rng.uniform(-lim, lim, (a, b))
        off += a * b
        Ws.append(W), gWs.append(gW), bs.append(P[off : off + b]), gbs.append(G[off : off + b])
        off += b
    bufs = {}
    state = {"t": 0}
    b1, b2, eps, lr = 0.9, 0.999, 1e-7, 1e-3

    def step(xb, yb):
        nonlocal m, v, tmp  # updated in place; augmented assignment needs the declaration
        nb = len(xb)
        ar = bufs.setdefault(("ar", nb), np.arange(nb))
        h1 = xb @ Ws[0]
        h1 += bs[0]
        np.maximum(h1, 0, out=h1)
        h2 = h1 @ Ws[1]
        h2 += bs[1]
        np.maximum(h2, 0, out=h2)
        z = h2 @ Ws[2]
        z += bs[2]
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        s = z.sum(axis=1)
        loss = np.log(s).sum() - np.log(z[ar, yb]).sum()
        z /= s[:, None]  # z is now softmax p
        z[ar, yb] -= 1
        z *= f32(1.0 / nb)
        np.matmul(h2.T, z, out=gWs[2])
        z.sum(axis=0, out=gbs[2])
        d2 = z @ Ws[2].T
        d2 *= h2 > 0
        np.matmul(h1.T, d2, out=gWs[1])
        d2.sum(axis=0, out=gbs[1])
        d1 = d2 @ Ws[1].T
        d1 *= h1 > 0
        np.matmul(xb.T, d1, out=gWs[0])
        d1.sum(axis=0, out=gbs[0])
        # Adam (Keras form), whole-buffer in-place operations
        state["t"] += 1
        t = state["t"]
        lr_t = f32(lr * math.sqrt(1 - b2**t) / (1 - b1**t))
        m += (1 - b1) * (G - m)
        np.multiply(G, G, out=tmp)
        tmp -= v
        tmp *= 1 - b2
        v += tmp
        np.sqrt(v, out=tmp)
        tmp += eps
        np.divide(m, tmp, out=tmp)
        tmp *= lr_t
        P[...] -= tmp
        return loss

    def epoch(xs, ys):
        n = len(xs)
        order = rng.permutation(n)
        total_loss = 0.0
        for b in range(math.ceil(n / batch)):
            idx = order[b * batch : (b + 1) * batch]
            xb = bufs.get(("x", len(idx)))
            if xb is None:
                xb = bufs[("x", len(idx))] = np.empty((len(idx), 784), f32)
            np.take(xs, idx, axis=0, out=xb)
            total_loss += float(step(xb, ys[idx]))
        return total_loss / n

    epoch(x[:warm], y[:warm])
    return _timed(lambda: epoch(x, y))


def blas_info() -> dict:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {}
    return {
        f"{p.get('internal_api')}": {
            "architecture": p.get("architecture"),
            "threads": p.get("num_threads"),
            "version": p.get("version"),
        }
        for p in threadpool_info()
    }


def worker(task: dict) -> dict:
    kind, model, who = task["kind"], task.get("model"), task.get("who")
    n = task.get("n", 0)
    batch = task.get("batch", BATCH.get(model, 128))
    warm = min(task.get("warm", 4 * batch), n)
    out = {"kind": kind, "model": model, "who": who}
    if kind == "ceiling":
        import torch

        a = torch.rand(2048, 2048)
        torch.mm(a, a)
        best = min(_timed(lambda: torch.mm(a, a))[0] for _ in range(5))
        return {**out, "gflops": 2 * 2048**3 / best / 1e9, "threads": torch.get_num_threads()}
    if kind == "baseline":  # imports, data and model, no step: what the framework costs before training
        x, y = make_data(model, n)
        if who == "nnctl":
            nnctl_model(model, batch)
        else:
            torch_model(model)
        return out
    x, y = make_data(model, n)
    if kind == "train":
        if who == "nnctl":
            sec, cpu, loss = nnctl_train(model, x, y, batch, warm, mallopt=task.get("mallopt", True))
        elif who == "numpy":
            sec, cpu, loss = numpy_train(x, y, batch, warm)
        elif who == "keras":
            sec, cpu, loss = keras_train(model, x, y, batch, warm)
        else:
            sec, cpu, loss = torch_train(model, x, y, batch, warm, fused=who == "torch-fused")
    elif kind == "predict":
        sec, cpu, loss = (nnctl_predict if who == "nnctl" else torch_predict)(model, x, batch)
    else:
        raise ValueError(kind)
    out.update(seconds=sec, cpu_seconds=cpu, samples=n, check=loss, steal_seconds=STEAL[0], loadavg=os.getloadavg())
    if task.get("blas_info"):
        out["blas"] = blas_info()
    if who == "nnctl":
        import nnctl

        out["nnctl_file"] = nnctl.__file__  # which tree's nnctl ran (--baseline)
    return out


# ======================================================================================================
# parent side
# ======================================================================================================
def layers_available() -> dict:
    from nnctl.layers import layer_class

    return {m: all(layer_class(e["type"]) is not None for e in layers) for m, layers in NNCTL_LAYERS.items()}


def matmul_ceiling(n: int = 2048, reps: int = 5) -> dict:
    import numpy as np

    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = a.copy()
    out = np.empty_like(a)
    np.matmul(a, b, out=out)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        np.matmul(a, b, out=out)
        times.append(time.perf_counter() - t)
    flop = 2 * n**3
    return {"best": flop / min(times) / 1e9, "median": flop / statistics.median(times) / 1e9}


def environment(ceiling: dict) -> dict:
    import numpy as np

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                flags = " ".join(f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in have)
                break
    except OSError:
        pass
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    blas = blas_info().get("openblas", {})
    commit = "unknown"
    try:  # read-only: no index refresh (--no-optional-locks)
        head = subprocess.run(
            ["git", "--no-optional-locks", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "--no-optional-locks", "status", "--porcelain", "--", "nnctl"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        if head:
            commit = head + (" + uncommitted changes under nnctl/" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "nnctl_commit": commit,
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": cpu,
        "cpu_flags": flags,
        "cores": os.cpu_count(),
        "usable_cores": affinity,
        "loadavg": os.getloadavg(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch_version(),
        "keras": keras_version(),
        "openblas": blas,
        "env": {k: os.environ.get(k) for k in ENV_KEYS},
        "numpy_matmul_gflops": ceiling,
    }


class Plan:
    """Sizes for a full or a --quick run."""

    def __init__(self, quick: bool):
        self.quick = quick
        self.mlp_n = 4096 if quick else 60000
        self.cnn_n = 256 if quick else 10240
        self.lstm_n = 512 if quick else 10240
        self.pred_n = {"mlp": 2048, "cnn": 256} if quick else {"mlp": 10240, "cnn": 10240}
        self.warm_batches = 1 if quick else 4
        self.startup_runs = 2 if quick else 7
        self.knob_n = 2048 if quick else 60000
        self.knob_cnn_n = 128 if quick else 5120


def med(rs, key):
    vals = [r[key] for r in rs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def alternate(tasks_by_who: dict, repeats: int, env=None) -> dict:
    """Run each contender's task once per repeat, alternating, the order rotated every repeat."""
    names = list(tasks_by_who)
    results: dict = {w: [] for w in names}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for who in order:
            task = tasks_by_who[who]
            child_env = (env or {}).get(who)
            if task.get("tree"):  # --baseline: this benchmark code, another tree's nnctl
                child_env = {**(child_env or os.environ), "NNCTL_BENCH_TREE": task["tree"]}
            res = run_child(__file__, task, env=child_env)
            if task.get("tree") and "nnctl_file" in res and not res["nnctl_file"].startswith(task["tree"]):
                res = {"error": f"imported {res['nnctl_file']}, not the nnctl of {task['tree']}", **task}
            if "error" in res:
                log(f"  {who}: ERROR {res['error']}")
            else:
                log(
                    f"  {who} (repeat {r + 1}/{repeats}): {res['seconds']:.3f} s, cpu {res['cpu_seconds']:.2f} s, "
                    f"steal {res['steal_seconds']:.2f} s, load {res['loadavg'][0]:.1f}, peak RSS {res['rss_mib']:.0f} MiB"
                )
            results[who].append(res)
    return results


def summarize(results: dict, flops_per_sample: float, per: int | None) -> dict:
    """Median seconds (optionally scaled to ``per`` samples), samples/s, GFLOP/s, RSS per contender."""
    out = {}
    for who, rs in results.items():
        ok = [r for r in rs if "error" not in r]
        if not ok:
            out[who] = {"error": rs[0].get("error", "failed") if rs else "not run"}
            continue
        sec = med(ok, "seconds")
        n = ok[0]["samples"]
        best = min(r["seconds"] for r in ok)
        out[who] = {
            "seconds": sec,
            "samples": n,
            "seconds_per": sec * per / n if per else sec,
            "best_per": best * per / n if per else best,
            "samples_per_s": n / sec,
            "gflops": flops_per_sample * n / sec / 1e9,
            "rss_mib": med(ok, "rss_mib"),
            "cpu_util": med(ok, "cpu_seconds") / sec,
            "all_seconds": [r["seconds"] for r in ok],
            "cpu_seconds": med(ok, "cpu_seconds"),  # on a loaded machine the steadier measure of work
            "all_cpu_seconds": [r["cpu_seconds"] for r in ok],
            "check": ok[0].get("check"),
        }
    return out


def bench_train(model: str, plan: Plan, repeats: int, torch_ok: bool, keras_ok: bool = False, batch=None) -> dict:
    batch = batch or BATCH[model]
    n = plan.mlp_n if model == "mlp" else plan.cnn_n if "cnn" in model else plan.lstm_n
    base = {"kind": "train", "model": model, "n": n, "batch": batch, "warm": plan.warm_batches * batch}
    tasks = {"nnctl": {**base, "who": "nnctl"}}
    if BASELINE:  # the same nnctl task with the nnctl of another source tree (--baseline)
        tasks["nnctl-before"] = {**base, "who": "nnctl", "tree": BASELINE}
    if MALLOPT_AB and model != "mlp":
        tasks["nnctl-no-mallopt"] = {**base, "who": "nnctl", "mallopt": False}
    if model == "mlp":
        tasks["numpy"] = {**base, "who": "numpy"}
    if torch_ok:
        tasks["torch"] = {**base, "who": "torch"}
        if model == "mlp":
            tasks["torch-fused"] = {**base, "who": "torch-fused"}
    if keras_ok:
        tasks["keras"] = {**base, "who": "keras"}
    log(f"{model}: training {n} samples, batch {batch}, contenders {', '.join(tasks)}")
    res = alternate(tasks, repeats)
    return summarize(res, 3 * fwd_flops(model), None if model == "mlp" else 10000)


def bench_predict(model: str, plan: Plan, repeats: int, torch_ok: bool) -> dict:
    base = {"kind": "predict", "model": model, "n": plan.pred_n[model], "batch": 1024}
    tasks = {"nnctl": {**base, "who": "nnctl"}}
    if torch_ok:
        tasks["torch"] = {**base, "who": "torch"}
    log(f"predict {model}: {plan.pred_n[model]} samples at batch 1024")
    return summarize(alternate(tasks, repeats), fwd_flops(model), 10000)


def bench_memory_baseline(torch_ok: bool) -> dict:
    """Peak RSS of a child that imports, makes the CNN data and builds the model, but never steps."""
    out = {}
    for who in ["nnctl"] + (["torch"] if torch_ok else []):
        res = run_child(__file__, {"kind": "baseline", "model": "cnn", "who": who, "n": 10240})
        out[who] = res.get("rss_mib")
    return out


def _time_cmd(cmd, runs: int, env=None) -> dict:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        times.append(time.perf_counter() - t)
        if proc.returncode != 0:
            return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return {"median": statistics.median(times), "min": min(times), "all": times}


def bench_startup(plan: Plan, torch_ok: bool) -> dict:
    """Train a tiny checkpoint with the CLI, then time ``nnctl predict CKPT one-row.csv`` end to end."""
    import numpy as np

    exe = Path(sys.executable).with_name("nnctl")
    nnctl_cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "nnctl"]
    tmp = Path(tempfile.mkdtemp(prefix="nnctl-bench-"))
    try:
        rng = np.random.default_rng(0)
        feats = rng.normal(size=(60, 4))
        labels = np.array(["a", "b", "c"])[(feats[:, 0] > 0).astype(int) + (feats[:, 1] > 0.5).astype(int)]
        rows = ["f0,f1,f2,f3,label"] + [",".join(f"{v:.4f}" for v in r) + f",{c}" for r, c in zip(feats, labels)]
        (tmp / "train.csv").write_text("\n".join(rows) + "\n")
        (tmp / "one.csv").write_text("f0,f1,f2,f3\n0.1,0.2,0.3,0.4\n")
        (tmp / "spec.toml").write_text(
            'name = "tiny"\nseed = 0\n[data]\ntrain = "train.csv"\ntarget = "label"\nnormalize = "standard"\n'
            '[[model.layers]]\ntype = "Dense"\nunits = 8\nactivation = "relu"\n'
            '[[model.layers]]\ntype = "Dense"\nunits = 3\nactivation = "softmax"\n'
            '[train]\nloss = "categorical_crossentropy"\nepochs = 2\nbatch_size = 16\n'
            '[output]\ncheckpoint = "tiny.h5"\n'
        )
        log("startup: training a tiny checkpoint")
        proc = subprocess.run([*nnctl_cmd, "train", str(tmp / "spec.toml")], capture_output=True, text=True, cwd=tmp)
        if proc.returncode != 0:
            return {"error": f"nnctl train failed: {proc.stderr.strip()[-300:]}"}
        ckpt = tmp / "tiny.h5"
        out = {}
        log(f"startup: {plan.startup_runs} runs each of nnctl predict and the interpreter floors")
        cmds = {
            "nnctl predict": [*nnctl_cmd, "predict", str(ckpt), str(tmp / "one.csv")],
            "python -c pass": [sys.executable, "-c", "pass"],
            "python -c 'import numpy'": [sys.executable, "-c", "import numpy"],
        }
        if torch_ok and not plan.quick:
            cmds["python -c 'import torch'"] = [sys.executable, "-c", "import torch"]
        for _ in range(1):  # warm the page cache once
            for cmd in cmds.values():
                subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        times: dict = {k: [] for k in cmds}
        for _ in range(plan.startup_runs):  # alternate the commands
            for k, cmd in cmds.items():
                r = _time_cmd(cmd, 1)
                if "error" in r:
                    out[k] = r
                else:
                    times[k].append(r["median"])
        for k, ts in times.items():
            if ts and k not in out:
                out[k] = {"median": statistics.median(ts), "min": min(ts), "all": ts}
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


MALLOC_1G = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}


def knob_variants(plan: Plan) -> list[tuple[str, dict, str, int]]:
    """(label, env changes (None = unset), model, batch); each model's first entry is its baseline."""
    return [
        ("as given", {}, "mlp", 128),
        ("OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1", {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}, "mlp", 128),
        ("OPENBLAS_NUM_THREADS=2 OMP_NUM_THREADS=2", {"OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"}, "mlp", 128),
        ("OPENBLAS_CORETYPE unset", {"OPENBLAS_CORETYPE": None}, "mlp", 128),
        ("OPENBLAS_CORETYPE=Haswell", {"OPENBLAS_CORETYPE": "Haswell"}, "mlp", 128),
        ("batch_size 64", {}, "mlp", 64),
        ("batch_size 256", {}, "mlp", 256),
        ("MALLOC_{MMAP,TRIM}_THRESHOLD_=1GiB", MALLOC_1G, "mlp", 128),
        ("CNN as given", {}, "cnn", 128),
        ("CNN MALLOC_{MMAP,TRIM}_THRESHOLD_=1GiB", MALLOC_1G, "cnn", 128),
        ("CNN OPENBLAS_CORETYPE=Haswell", {"OPENBLAS_CORETYPE": "Haswell"}, "cnn", 128),
    ]


def bench_knobs(plan: Plan, repeats: int) -> list[dict]:
    variants = knob_variants(plan)
    sizes = {"mlp": plan.knob_n, "cnn": plan.knob_cnn_n}
    log(
        f"knobs: nnctl MLP epoch of {plan.knob_n} samples and CNN training on {plan.knob_cnn_n} samples "
        f"under {len(variants)} settings"
    )
    results: dict = {v[0]: [] for v in variants}
    for r in range(repeats):
        order = variants[r % len(variants) :] + variants[: r % len(variants)]
        for label, changes, model, batch in order:
            env = dict(os.environ)
            for k, v in changes.items():
                if v is None:
                    env.pop(k, None)
                else:
                    env[k] = v
            res = run_child(
                __file__,
                {
                    "kind": "train",
                    "model": model,
                    "who": "nnctl",
                    "n": sizes[model],
                    "batch": batch,
                    "warm": plan.warm_batches * batch,
                    "blas_info": True,
                },
                env=env,
            )
            if "error" in res:
                log(f"  {label}: ERROR {res['error']}")
            else:
                log(f"  {label} (repeat {r + 1}/{repeats}): {res['seconds']:.3f} s, peak RSS {res['rss_mib']:.0f} MiB")
            results[label].append(res)
    rows = []
    base: dict = {}
    for label, _, model, batch in variants:
        ok = [r for r in results[label] if "error" not in r]
        if not ok:
            rows.append({"label": label, "error": results[label][0].get("error") if results[label] else "not run"})
            continue
        sec = med(ok, "seconds")
        base.setdefault(model, sec)
        blas = ok[0].get("blas", {}).get("openblas", {})
        rows.append(
            {
                "label": label,
                "model": model,
                "batch": batch,
                "seconds": sec,
                "samples": ok[0]["samples"],
                "samples_per_s": ok[0]["samples"] / sec,
                "vs_given": sec / base[model],
                "rss_mib": med(ok, "rss_mib"),
                "blas_arch": blas.get("architecture"),
                "blas_threads": blas.get("threads"),
                "all_seconds": [r["seconds"] for r in ok],
            }
        )
    return rows


# -- report --------------------------------------------------------------------------------------------
TARGETS = {"mlp": 0.8, "predict mlp": 1.0, "predict cnn": 1.0, **{k: 1.0 for k in TRAIN_ROWS if k != "mlp"}}


def fmt(v, spec=".3f", none="-"):
    return none if v is None else format(v, spec)


def report(
    env: dict,
    rows: dict,
    startup: dict | None,
    memory: dict | None,
    knobs: list | None,
    ceiling: float,
    torch_ok: bool,
    keras_ok: bool = True,
) -> str:
    lines = []
    p = lines.append
    p("")
    p("== environment ==")
    p(f"date        {env['date']}")
    p(f"nnctl       commit {env['nnctl_commit']}")
    p(
        f"cpu         {env['cpu']} ({env['cpu_flags']}); {env['cores']} cores, {env['usable_cores']} usable; "
        f"load average at start {', '.join(f'{x:.2f}' for x in env['loadavg'])}"
    )
    blas = env["openblas"]
    p(
        f"python {env['python']}, numpy {env['numpy']} (OpenBLAS {blas.get('version', '?')}, kernel "
        f"{blas.get('architecture', '?')}, {blas.get('threads', '?')} threads), torch {env['torch'] or 'absent'}"
        + (f" ({env.get('torch_threads')} threads)" if env.get("torch_threads") else "")
        + f"; {env.get('keras') or 'keras absent'}"
    )
    p("env         " + ", ".join(f"{k}={v if v is not None else '(unset)'}" for k, v in env["env"].items()))
    c = env["numpy_matmul_gflops"]
    p(
        f"ceiling     NumPy float32 2048x2048 matmul: {c['best']:.1f} GFLOP/s (best of 5 at the start: "
        f"{c['start']['best']:.1f}, median {c['start']['median']:.1f}; at the end: {c['end']['best']:.1f}, "
        f"median {c['end']['median']:.1f})"
        + (f"; torch.mm: {env['torch_matmul_gflops']:.1f} GFLOP/s" if env.get("torch_matmul_gflops") else "")
    )
    p("")
    p("== results (median over repeats; time ratio nnctl/PyTorch: < 1 means nnctl is faster) ==")
    hdr = (
        f"{'row':<30}{'contender':<13}{'median':>9}{'best':>8}  {'unit':<9}{'samples/s':>11}{'GFLOP/s':>9}{'%ceil':>7}"
        f"{'peakRSS':>9}{'cpu%':>6}{'vs torch':>9}  target (nnctl/torch time)"
    )
    p(hdr)
    p("-" * len(hdr))
    for key, (title, unit, res) in rows.items():
        ref = res.get("torch", {}).get("seconds")
        for who, r in res.items():
            if "error" in r:
                p(f"{title:<30}{who:<13}  {r['error']}")
                continue
            ratio = r["seconds"] / ref if ref and who == "nnctl" else None
            target = ""
            if who == "nnctl" and key in TARGETS:
                goal = TARGETS[key]
                target = f"<= {goal:.2f}: " + ("-" if ratio is None else ("met" if ratio <= goal else "MISSED"))
            kr = res.get("keras", {}).get("seconds")
            if who == "nnctl" and kr:
                target += f"; vs Keras {r['seconds'] / kr:.2f} (< 1: {'met' if r['seconds'] < kr else 'MISSED'})"
            if who == "nnctl" and "numpy" in res and "seconds" in res["numpy"]:
                fr = r["seconds"] / res["numpy"]["seconds"]
                target += f"; vs NumPy floor {fr:.2f} (<= 1.15: {'met' if fr <= 1.15 else 'MISSED'})"
            if who not in ("nnctl",) and ref and "seconds" in r:
                ratio_s = f"{r['seconds'] / ref:.2f}" if who != "torch" else "1.00"
            else:
                ratio_s = fmt(ratio, ".2f")
            p(
                f"{title:<30}{who:<13}{r['seconds_per']:>9.3f}{r['best_per']:>8.3f}  {unit:<9}{r['samples_per_s']:>11,.0f}"
                f"{r['gflops']:>9.1f}{100 * r['gflops'] / ceiling:>6.1f}%{fmt(r['rss_mib'], '.0f'):>9}"
                f"{100 * r['cpu_util']:>5.0f}%{ratio_s:>9}  {target}"
            )
        if not torch_ok:
            p(f"{title:<30}{'torch':<13}  skipped: PyTorch is not installed (pip install torch==2.13.0)")
        if not keras_ok and not key.startswith("predict"):
            p(f"{title:<30}{'keras':<13}  skipped: Keras 3 is not installed (pip install tensorflow-cpu keras)")
    if memory is not None:
        p("")
        p("== memory: CNN training at batch 128, peak RSS of a fresh process per contender ==")
        cnn = rows.get("cnn", (None, None, {}))[2]
        for who in ("nnctl", "torch"):
            if who in cnn and "rss_mib" in cnn[who]:
                base = memory.get(who)
                p(
                    f"{who:<8} peak {cnn[who]['rss_mib']:>7.0f} MiB   (imports + data + model, no step: "
                    f"{fmt(base, '.0f')} MiB; training adds {fmt(cnn[who]['rss_mib'] - base if base else None, '.0f')} MiB)"
                )
        if "nnctl" in cnn and "torch" in cnn and "rss_mib" in cnn.get("torch", {}):
            p(f"ratio nnctl/torch peak RSS: {cnn['nnctl']['rss_mib'] / cnn['torch']['rss_mib']:.2f}")
    if startup is not None:
        p("")
        p("== startup: process start to exit, median (min) ==")
        if "error" in startup:
            p(f"  {startup['error']}")
        for k, v in startup.items():
            if k == "error":
                continue
            if "error" in v:
                p(f"{k:<28} {v['error']}")
            else:
                tgt = f"   target < 0.6 s: {'met' if v['median'] < 0.6 else 'MISSED'}" if k == "nnctl predict" else ""
                p(f"{k:<28} {v['median']:.3f} s ({v['min']:.3f} s){tgt}")
    if knobs is not None:
        p("")
        p(
            "== knobs: nnctl training under user settings (fresh process each; time relative to the model's "
            "first row, the environment as given) =="
        )
        for k in knobs:
            if "error" in k:
                p(f"{k['label']:<44} {k['error']}")
            else:
                what = f"s/{k['samples']}"
                p(
                    f"{k['label']:<44} {k['seconds']:>7.3f} {what:<8} (best {min(k['all_seconds']):.3f}) "
                    f"{k['samples_per_s']:>9,.0f} samples/s  x{k['vs_given']:.2f}  peak {fmt(k['rss_mib'], '.0f')} MiB  "
                    f"(OpenBLAS kernel {k['blas_arch']}, {k['blas_threads']} threads)"
                )
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes, one repeat, one thread unless --threads: a smoke run of seconds",
    )
    ap.add_argument("--repeats", type=int, default=None, help="repeats per contender (default 3, --quick 1)")
    ap.add_argument(
        "--only",
        default=",".join(GROUPS),
        help=f"comma-separated groups among {', '.join(GROUPS)} (memory = part of cnn)",
    )
    ap.add_argument("--json", default=None, help="also write every number to this JSON file")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="set OPENBLAS_NUM_THREADS, OMP_NUM_THREADS and MKL_NUM_THREADS (and so torch's default "
        "thread count) for every contender; default: the environment as given",
    )
    ap.add_argument(
        "--baseline",
        default=None,
        metavar="TREE",
        help="also train with the nnctl of another source tree (contender nnctl-before), alternating "
        "with the others in the same run: a before/after table from one run",
    )
    ap.add_argument(
        "--mallopt-ab",
        action="store_true",
        help="also train the CNN and LSTM without the CLI's malloc settings (contender nnctl-no-mallopt)",
    )
    ap.add_argument(
        "--samples",
        type=int,
        default=None,
        help="training samples per contender for every row but the MLP (default 10240; rows stay per 10k)",
    )
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker_main(worker, args.worker)
    global BASELINE, MALLOPT_AB
    MALLOPT_AB = args.mallopt_ab
    if args.baseline:
        if not (Path(args.baseline) / "nnctl" / "__init__.py").is_file():
            ap.error(f"--baseline: {args.baseline} holds no nnctl/__init__.py")
        BASELINE = str(Path(args.baseline).resolve())
    if args.quick and args.threads is None:
        # a smoke run: one thread keeps it to seconds even when other jobs hold the cores (with two threads,
        # OpenBLAS and OpenMP wait on each other at every call and a busy machine slows them 10-30x)
        args.threads = 1
    set_threads(args.threads)
    only = [g.strip().lower() for g in args.only.split(",") if g.strip()]
    only = ["cnn" if g == "memory" else g for g in only]
    bad = [g for g in only if g not in GROUPS]
    if bad:
        ap.error(f"--only: unknown group(s) {', '.join(bad)}; expected {', '.join(GROUPS)}")
    repeats = args.repeats or (1 if args.quick else 3)
    plan = Plan(args.quick)
    if args.samples:
        plan.cnn_n = plan.lstm_n = args.samples
    t_start = time.perf_counter()
    torch_ok = have_torch()
    if not torch_ok:
        print("PyTorch is not installed: the PyTorch rows are skipped (pip install torch==2.13.0 into .venv)")
    keras_ok = have_keras()
    if not keras_ok:
        print("Keras 3 is not installed: the Keras rows are skipped (pip install tensorflow-cpu keras into .venv)")
    log("measuring the NumPy float32 matmul ceiling")
    ceiling = matmul_ceiling()
    env = environment(ceiling)
    if torch_ok and not plan.quick:
        tc = run_child(__file__, {"kind": "ceiling"})
        env["torch_matmul_gflops"], env["torch_threads"] = tc.get("gflops"), tc.get("threads")
    avail = layers_available()
    rows: dict = {}
    for key, (group, model, batch, title) in TRAIN_ROWS.items():
        if group not in only:
            continue
        if not avail[model]:
            print(f"{key}: skipped: nnctl layers {[e['type'] for e in NNCTL_LAYERS[model]]} are not all importable yet")
            continue
        title = title or f"MLP train, {plan.mlp_n // 1000}k epoch"
        unit = "s/epoch" if model == "mlp" else "s/10k"
        if plan.quick:
            title += " (quick)"
        rows[key] = (title, unit, bench_train(model, plan, repeats, torch_ok, keras_ok, batch))
    memory = None
    if "cnn" in rows:
        log("memory: baseline children (imports, data, model; no training step)")
        memory = bench_memory_baseline(torch_ok)
    if "predict" in only:
        for model in ("mlp", "cnn"):
            if not avail[model]:
                print(f"predict {model}: skipped: nnctl layers are not importable yet")
                continue
            rows[f"predict {model}"] = (
                f"{model.upper()} predict b1024",
                "s/10k",
                bench_predict(model, plan, repeats, torch_ok),
            )
    startup = bench_startup(plan, torch_ok) if "startup" in only else None
    knobs = bench_knobs(plan, repeats) if "knobs" in only else None
    log("measuring the NumPy float32 matmul ceiling again (the table uses the better of the two)")
    again = matmul_ceiling()
    env["numpy_matmul_gflops"] = {"best": max(ceiling["best"], again["best"]), "start": ceiling, "end": again}
    text = report(env, rows, startup, memory, knobs, env["numpy_matmul_gflops"]["best"], torch_ok, keras_ok)
    print(text)
    print(
        f"\n(total wall time {time.perf_counter() - t_start:.0f} s, {repeats} repeat(s)"
        + (", --quick sizes" if plan.quick else "")
        + ")"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "env": env,
                    "rows": {k: v[2] for k, v in rows.items()},
                    "startup": startup,
                    "memory_baseline": memory,
                    "knobs": knobs,
                },
                indent=1,
                default=str,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
