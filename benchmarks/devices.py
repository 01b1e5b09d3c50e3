#!/usr/bin/env python
"""Training throughput of nnctl against the same model in PyTorch on one device (CPU or GPU), in one run.

    .venv/bin/python benchmarks/devices.py [--device cpu|gpu] [--quick] [--only mlp,transformer:128]
                                           [--repeats 3] [--steps N] [--threads N] [--json out.json]

Rows (each model at two batch sizes; ``--only`` takes a model name or ``model:batch``):
  mlp          784-256-128-10 (relu, softmax) on 784 features, sparse CE; batch 128 and 512
  cnn          Conv2D(32,3)-Conv2D(64,3)-MaxPool(2)-Flatten-Dense(128)-Dense(10) on 28x28x1, sparse CE;
               128 and 512
  cifar        the stack of specs/cifar_style_cnn.toml on 32x32x3: Conv2D(32,3)-Conv2D(64,3)-MaxPool(2)-
               Conv2D(128,3)-MaxPool(2)-Flatten-Dense(64)-Dense(10), sparse CE; 128 and 512
  lstm         LSTM(64)->Dense(1) on (50, 8) sequences, mse; 64 and 512
  transformer  Embedding(1000, 64) + PositionEmbedding, one post-norm encoder block (MultiHeadAttention,
               4 heads x 16, self-attention + residual + LayerNormalization, Dense(128, relu)-Dense(64) +
               residual + LayerNormalization), GlobalAveragePooling1D, Dense(2, softmax); 64-token
               sequences, sparse CE; 128 and 512
Every model trains with Adam(lr 1e-3, eps 1e-7, Keras's default) in float32 on synthetic data (fixed
seed, random labels: only the speed is measured). The model definitions are benchmarks/common.py's.

Method (run.py's conventions): every measurement (row, contender, repeat) runs in a fresh child process
(``--worker``); within a repeat the contenders alternate and the order rotates every repeat; the table
gives medians over the repeats. In the child, data generation, the one host->device copy of the data,
model building and ``warm-up`` steps (CuPy kernel compilation, cuDNN/cuBLAS handles, allocator pools)
are outside the timed region. The timed region is one shuffled pass of ``steps`` full batches with
one loss read at the end, bracketed by device synchronisation (nnctl.backend.synchronize(),
torch.cuda.synchronize()). Throughput is samples/s; the ratio is nnctl time / PyTorch time (< 1: nnctl
is faster).

Contenders:
  nnctl    spec.validate -> build.build_model -> Model.to_device -> train.Trainer, as run.py; the timed
           loop calls Trainer.loss_and_grad and the optimizer step exactly as Trainer.run_epoch does,
           but indexes batches out of device-resident arrays. run_epoch gathers each batch on the host
           and copies it to the device, which on a GPU would time a host->device copy per step that
           the PyTorch loop does not make; on the CPU the two loops do the same work.
  PyTorch  the same layers with the same trainable parameter count (checked before any timing),
           CrossEntropyLoss on logits (nnctl fuses softmax with the loss too) or MSELoss, and
           Adam(lr=1e-3, eps=1e-7); images NCHW, transposed once outside the timer. On a GPU, TF32 is
           turned off so that both contenders do float32 arithmetic (CuPy uses no TF32 unless
           CUPY_TF32=1); cudnn.benchmark stays at its default.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # benchmarks/common.py: model definitions, data, the nnctl builder, the child-process runner

VOCAB, SEQ, D_MODEL, HEADS, FF = common.VOCAB, 64, 64, 4, 128
SCE = "sparse_categorical_crossentropy"

# model -> nnctl spec layers, input shape, loss, classes (None: regression), batch sizes
MODELS = {
    "mlp": (common.NNCTL_LAYERS["mlp"], (784,), SCE, 10, (128, 512)),
    "cnn": (common.NNCTL_LAYERS["cnn"], (28, 28, 1), SCE, 10, (128, 512)),
    "cifar": (common.NNCTL_LAYERS["cifar_cnn"], (32, 32, 3), SCE, 10, (128, 512)),
    "lstm": (common.NNCTL_LAYERS["lstm"], (50, 8), "mse", None, (64, 512)),
    "transformer": (
        common.transformer_layers(D_MODEL, HEADS, FF),
        (SEQ,),
        SCE,
        2,
        (128, 512),
    ),
}

# timed steps per measurement (--steps overrides). CPU: about this many samples, which is 1-3 s per
# measurement on one core of the 2-core development machine (the CIFAR CNN at batch 512 takes longer:
# 3 steps at least); GPU: a step takes milliseconds, so 200 steps whatever the batch
CPU_SAMPLES = {"mlp": 40960, "cnn": 1024, "cifar": 768, "lstm": 8192, "transformer": 4096}
GPU_STEPS = 200
WARMUP = {"cpu": 2, "gpu": 10}  # untimed steps first: on a GPU the first steps compile CuPy kernels


def default_steps(device: str, model: str, batch: int) -> int:
    return GPU_STEPS if device == "gpu" else max(3, CPU_SAMPLES[model] // batch)


def make_data(model: str, n: int):
    """Host arrays, the same in every child (fixed seed); common.py's for the models it defines."""
    import numpy as np

    if model in ("mlp", "cnn", "lstm"):  # the same models as common.py's (its transformer is smaller)
        return common.make_data(model, n)
    rng = np.random.default_rng(1234)
    if model == "transformer":
        x = rng.integers(0, VOCAB, (n, SEQ)).astype(np.int64)  # token ids
    else:
        x = rng.random((n, *MODELS[model][1]), dtype=np.float32)
    return x, rng.integers(0, MODELS[model][3], n).astype(np.int64)


# ======================================================================================================
# worker side: one measurement per process
# ======================================================================================================
def nnctl_setup(model: str, batch: int, device: str):
    """A built nnctl model and Trainer on ``device`` for MODELS[model]."""
    import numpy as np

    layers, shape, loss, classes, _ = MODELS[model]
    return common.nnctl_setup(
        layers, shape, loss, classes, batch, device, input_dtype=np.int64 if model == "transformer" else None
    )


def torch_setup(model: str):
    """The PyTorch twin of MODELS[model] (common.py's torch_model for mlp, cnn and lstm)."""
    import torch

    torch.manual_seed(0)
    if model in ("mlp", "cnn"):
        return common.torch_model(model)
    if model == "lstm":
        net = common.torch_model(model)
        # Keras/nnctl keep one bias per gate, PyTorch two (b_ih + b_hh, only their sum matters): b_hh
        # frozen at zero gives the same function with the same trainable parameters
        with torch.no_grad():
            net.lstm.bias_hh_l0.zero_()
        net.lstm.bias_hh_l0.requires_grad_(False)
        return net
    if model == "cifar":
        return common.torch_model("cifar_cnn")
    return common.torch_transformer(SEQ, D_MODEL, HEADS, FF)


def torch_param_count(net) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def nnctl_pass(trainer, x, y, batch: int, rng) -> float:
    """One shuffled pass, Trainer.run_epoch's step sequence on device-resident x, y; the mean loss."""
    from nnctl import backend as B

    net, opt = trainer.model, trainer.optimizer
    order = B.asarray(rng.permutation(len(x)))
    lr = float(trainer.schedule.lr(0))
    losses = []
    for s in range(0, len(x), batch):
        idx = order[s : s + batch]
        value, _ = trainer.loss_and_grad(x[idx], y[idx])
        opt.step(net.flat_params, net.flat_grads, net.slices.values(), lr=lr)
        losses.append(B.xp.asarray(value))
    return float(B.xp.stack(losses).mean())  # one host read per pass, as run_epoch


def torch_pass(net, opt, crit, x, y, batch: int, gen) -> float:
    import torch

    perm = torch.randperm(len(x), generator=gen).to(x.device)
    losses = []
    for s in range(0, len(x), batch):
        idx = perm[s : s + batch]
        opt.zero_grad(set_to_none=True)
        loss = crit(net(x[idx]), y[idx])
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    return float(torch.stack(losses).mean())


def timed(fn, sync):
    sync()  # nothing queued from before may land in the timed region
    t0 = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - t0, out


def worker(task: dict) -> dict:
    import numpy as np

    model, who, batch, device = task["model"], task["who"], task["batch"], task["device"]
    steps, warm = task["steps"], task["warm"]
    x, y = make_data(model, (steps + warm) * batch)
    xw, yw, xt, yt = x[: warm * batch], y[: warm * batch], x[warm * batch :], y[warm * batch :]
    out = {"model": model, "who": who, "batch": batch, "samples": steps * batch}
    if who == "nnctl":
        from nnctl import backend as B

        _, trainer = nnctl_setup(model, batch, device)
        xw, yw, xt, yt = (B.asarray(a) for a in (xw, yw, xt, yt))  # onto the device once
        rng = np.random.default_rng(0)
        nnctl_pass(trainer, xw, yw, batch, rng)
        sec, loss = timed(lambda: nnctl_pass(trainer, xt, yt, batch, rng), B.synchronize)
        if device == "gpu":
            info = B.info()
            out["device_name"] = info["gpus"][0]["name"]  # CuPy's current device is device 0
            out["versions"] = {"cupy": info["cupy"], "cuda_runtime": info["cuda_runtime"]}
    else:
        import torch

        dev = torch.device("cuda" if device == "gpu" else "cpu")
        if device == "gpu":
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        net = torch_setup(model).to(dev)
        net.train()
        opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-3, eps=1e-7)
        crit = torch.nn.MSELoss() if model == "lstm" else torch.nn.CrossEntropyLoss()

        def to_dev(a):
            if a.ndim == 4:  # NHWC -> NCHW
                a = np.ascontiguousarray(a.transpose(0, 3, 1, 2))
            return torch.from_numpy(a).to(dev)

        xw, yw, xt, yt = (to_dev(a) for a in (xw, yw, xt, yt))
        sync = torch.cuda.synchronize if device == "gpu" else (lambda: None)
        gen = torch.Generator().manual_seed(0)
        torch_pass(net, opt, crit, xw, yw, batch, gen)
        sec, loss = timed(lambda: torch_pass(net, opt, crit, xt, yt, batch, gen), sync)
        out["threads"] = torch.get_num_threads()
        if device == "gpu":
            out["device_name"] = torch.cuda.get_device_name(dev)
            out["versions"] = {"torch_cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}
    out.update(seconds=sec, samples_per_s=steps * batch / sec, loss=loss, loadavg=os.getloadavg()[0])
    return out


# ======================================================================================================
# parent side
# ======================================================================================================
def check_param_counts(models) -> dict:
    """Trainable parameters of both twins, built on the CPU; a mismatch stops the run before any timing."""
    counts = {}
    for model in models:
        net, _ = nnctl_setup(model, MODELS[model][4][0], "cpu")
        ours, theirs = net.param_count()[0], torch_param_count(torch_setup(model))
        print(f"parameters {model:<12} nnctl {ours:>9,}   PyTorch {theirs:>9,}")
        assert ours == theirs, f"{model}: nnctl has {ours} trainable parameters, the PyTorch twin {theirs}"
        counts[model] = ours
    return counts


def check_gpu() -> str | None:
    """Why the GPU run cannot go ahead, or None."""
    import torch

    from nnctl import backend as B

    ok, why = B.gpu_status()
    if not ok:
        return f"nnctl: {why}"
    if not torch.cuda.is_available():
        return f"PyTorch {torch.__version__} sees no CUDA device (a CPU-only wheel?)"
    return None


def environment(device: str) -> dict:
    import numpy as np

    cpu = platform.processor() or "unknown"
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "device": device,
        "cpu": cpu,
        "cores": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": common.torch_version(),
        "env": {k: os.environ.get(k) for k in common.ENV_KEYS},
    }


def parse_only(text: str | None) -> list[tuple[str, int]]:
    rows = [(m, b) for m, spec in MODELS.items() for b in spec[4]]
    if not text:
        return rows
    picked = []
    for item in (s.strip().lower() for s in text.split(",") if s.strip()):
        model, _, batch = item.partition(":")
        if model not in MODELS or (batch and not batch.isdigit()):
            raise SystemExit(f"--only: {item!r}: expected MODEL or MODEL:BATCH, MODEL among {', '.join(MODELS)}")
        picked += [(model, int(batch))] if batch else [r for r in rows if r[0] == model]
    return list(dict.fromkeys(picked))


def report(env: dict, rows: list[dict], counts: dict) -> str:
    lines = [
        "",
        "== environment ==",
        f"date     {env['date']}",
        f"device   {env['device']}"
        + (f": {env['gpu']}" if env.get("gpu") else f" ({env['cpu']}, {env['cores']} cores)"),
        f"versions python {env['python']}, numpy {env['numpy']}, torch {env['torch']}"
        + "".join(f", {k} {v}" for k, v in env.get("gpu_versions", {}).items()),
        "env      " + (", ".join(f"{k}={v}" for k, v in env["env"].items() if v is not None) or "(none set)"),
        "",
        "== training throughput (median over repeats; ratio = nnctl time / PyTorch time, < 1: nnctl faster) ==",
    ]
    hdr = (
        f"{'model':<12}{'batch':>6}{'params':>10}{'steps':>7}{'nnctl samples/s':>17}{'torch samples/s':>17}"
        f"{'ratio':>8}  loss nnctl / torch"
    )
    lines += [hdr, "-" * len(hdr)]
    for r in rows:
        n, t = r["nnctl"], r["torch"]
        sps = [f"{c['samples_per_s']:>17,.0f}" if "samples_per_s" in c else f"{'ERROR':>17}" for c in (n, t)]
        ratio = f"{n['seconds'] / t['seconds']:>8.2f}" if "seconds" in n and "seconds" in t else f"{'-':>8}"
        loss = " / ".join(f"{c['loss']:.3f}" if "loss" in c else "-" for c in (n, t))
        lines.append(
            f"{r['model']:<12}{r['batch']:>6}{counts[r['model']]:>10,}{r['steps']:>7}{''.join(sps)}{ratio}  {loss}"
        )
        for who, c in (("nnctl", n), ("torch", t)):
            if "error" in c:
                lines.append(f"    {who}: " + c["error"].replace("\n", "\n    "))
    return "\n".join(lines)


def summarize(results: list[dict]) -> dict:
    ok = [r for r in results if "error" not in r]
    if not ok:
        return {"error": results[0]["error"] if results else "not run"}
    sec = statistics.median(r["seconds"] for r in ok)
    return {
        "seconds": sec,
        "samples_per_s": ok[0]["samples"] / sec,
        "loss": ok[0]["loss"],
        "all_seconds": [r["seconds"] for r in ok],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="2 timed steps after 1 warm-up, one repeat, one thread on the CPU: a smoke run",
    )
    ap.add_argument("--only", default=None, help=f"comma-separated MODEL or MODEL:BATCH among {', '.join(MODELS)}")
    ap.add_argument("--repeats", type=int, default=None, help="repeats per contender (default 3, --quick 1)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per measurement (default per model)")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="OPENBLAS/OMP/MKL_NUM_THREADS for every contender (--quick on the CPU: 1)",
    )
    ap.add_argument("--json", default=None, help="also write every number to this JSON file")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return common.worker_main(worker, args.worker)
    if args.quick and args.threads is None and args.device == "cpu":
        args.threads = 1  # run.py's reason: two threads on a busy 2-core machine wait on each other
    common.set_threads(args.threads)
    rows = parse_only(args.only)
    repeats = args.repeats or (1 if args.quick else 3)
    t_start = time.perf_counter()
    if not common.have_torch():
        raise SystemExit("PyTorch is not installed: pip install torch (a CUDA wheel for --device gpu)")
    if args.device == "gpu" and (why := check_gpu()):
        raise SystemExit(f"--device gpu: {why}")
    env = environment(args.device)
    counts = check_param_counts(dict.fromkeys(m for m, _ in rows))
    results = []
    for model, batch in rows:
        steps = args.steps or (2 if args.quick else default_steps(args.device, model, batch))
        warm = 1 if args.quick else WARMUP[args.device]
        base = {"model": model, "batch": batch, "device": args.device, "steps": steps, "warm": warm}
        common.log(f"{model} batch {batch}: {steps} timed steps after {warm} warm-up, {repeats} repeat(s)")
        runs: dict = {"nnctl": [], "torch": []}
        for r in range(repeats):
            for who in ["nnctl", "torch"] if r % 2 == 0 else ["torch", "nnctl"]:  # alternate, rotated
                res = common.run_child(__file__, {**base, "who": who})
                if "error" in res:
                    common.log(f"  {who}: ERROR {res['error']}")
                else:
                    common.log(
                        f"  {who} (repeat {r + 1}/{repeats}): {res['seconds']:.3f} s, "
                        f"{res['samples_per_s']:,.0f} samples/s, load {res['loadavg']:.1f}"
                    )
                    env.setdefault("gpu", res.get("device_name"))
                    env.setdefault("gpu_versions", {}).update(res.get("versions", {}))
                runs[who].append(res)
        results.append(
            {
                "model": model,
                "batch": batch,
                "steps": steps,
                "warm": warm,
                **{who: summarize(rs) for who, rs in runs.items()},
            }
        )
    print(report(env, results, counts))
    print(
        f"\n(total wall time {time.perf_counter() - t_start:.0f} s, {repeats} repeat(s)"
        + (", --quick sizes" if args.quick else "")
        + ")"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"env": env, "param_counts": counts, "rows": results}, indent=1, default=str)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
