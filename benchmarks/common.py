"""What the benchmark scripts share: the model definitions and synthetic data, the one place that builds an nnctl
model and Trainer from them, and the fresh-process runner every measurement goes through.

run.py (nnctl against PyTorch CPU and a NumPy floor), devices.py (one device, CPU or GPU) and profile_step.py
(per-layer times) import this module; it imports nnctl and torch only inside functions, so a parent process
that only schedules children never loads them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MARK = "@@RESULT@@ "  # a worker's one result line on stdout starts with this
ENV_KEYS = (
    "OPENBLAS_CORETYPE",
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "GOTO_NUM_THREADS",
    "OMP_WAIT_POLICY",
    "NNCTL_DEVICE",
)

# -- models: nnctl spec layers, input shapes, losses, batch sizes ---------------------------------------
NNCTL_LAYERS = {
    "mlp": [
        {"type": "Dense", "units": 256, "activation": "relu"},
        {"type": "Dense", "units": 128, "activation": "relu"},
        {"type": "Dense", "units": 10, "activation": "softmax"},
    ],
    "cnn": [
        {"type": "Conv2D", "filters": 32, "kernel_size": 3, "activation": "relu"},
        {"type": "Conv2D", "filters": 64, "kernel_size": 3, "activation": "relu"},
        {"type": "MaxPooling2D", "pool_size": 2},
        {"type": "Flatten"},
        {"type": "Dense", "units": 128, "activation": "relu"},
        {"type": "Dense", "units": 10, "activation": "softmax"},
    ],
    "lstm": [{"type": "LSTM", "units": 64}, {"type": "Dense", "units": 1}],
}
INPUT_SHAPE = {"mlp": (784,), "cnn": (28, 28, 1), "lstm": (50, 8)}
LOSS = {"mlp": "sparse_categorical_crossentropy", "cnn": "sparse_categorical_crossentropy", "lstm": "mse"}
CLASSES = {"mlp": 10, "cnn": 10, "lstm": None}  # None: regression
BATCH = {"mlp": 128, "cnn": 128, "lstm": 64}


def make_data(model: str, n: int):
    """Synthetic host arrays for mlp, cnn or lstm, identical in every child (fixed seed)."""
    import numpy as np

    rng = np.random.default_rng(1234)
    x = rng.random((n, *INPUT_SHAPE[model]), dtype=np.float32)
    if model == "lstm":
        x -= 0.5
        y = x[:, -5:, 0].mean(axis=1, keepdims=True).astype(np.float32)
    else:
        y = rng.integers(0, 10, n).astype(np.int64)
    return x, y


def nnctl_setup(
    layers: list[dict],
    input_shape: tuple,
    loss: str,
    classes: int | None,
    batch: int,
    device: str = "cpu",
    input_dtype=None,
    mallopt: bool = True,
):
    """An nnctl Model on ``device`` and its Trainer (Adam, lr 1e-3), built through the library as the CLI does
    (which includes the CLI's ``backend.keep_freed_memory()`` call, unless ``mallopt`` is False)."""
    from nnctl import backend as B
    from nnctl import losses, optimizers
    from nnctl.build import build_model
    from nnctl.spec import validate
    from nnctl.train import Trainer

    B.use(device)
    if mallopt and hasattr(B, "keep_freed_memory"):
        B.keep_freed_memory()
    raw = {
        "name": "benchmark",
        "seed": 0,
        "data": {"train": "synthetic"},
        "model": {"layers": [dict(e) for e in layers]},
        "train": {
            "loss": loss,
            "optimizer": {"type": "adam", "learning_rate": 1e-3},
            "batch_size": batch,
            "epochs": 1,
            "shuffle": True,
        },
    }
    spec = validate(raw, source="benchmark")
    net = build_model(spec, input_shape, spec["seed"], input_dtype=input_dtype)
    net.to_device()
    task = "regression" if classes is None else "sparse"
    trainer = Trainer(
        net,
        losses.get(loss),
        optimizers.get("adam", learning_rate=1e-3),
        spec["train"],
        task,
        classes or 1,
        spec["seed"],
    )
    return net, trainer


def nnctl_model(model: str, batch: int, device: str = "cpu", mallopt: bool = True):
    """nnctl_setup for one of the models above."""
    return nnctl_setup(
        NNCTL_LAYERS[model], INPUT_SHAPE[model], LOSS[model], CLASSES[model], batch, device, mallopt=mallopt
    )


def torch_model(model: str):
    """The PyTorch twin of mlp, cnn or lstm (images NCHW)."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    if model == "mlp":
        return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
    if model == "cnn":
        return nn.Sequential(
            nn.Conv2d(1, 32, 3),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(12 * 12 * 64, 128),
            nn.ReLU(),
            nn.Linear(128, 10),
        )

    class LSTMNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(8, 64, batch_first=True)
            self.fc = nn.Linear(64, 1)

        def forward(self, x):
            _, (h, _) = self.lstm(x)
            return self.fc(h[-1])

    return LSTMNet()


# -- processes -------------------------------------------------------------------------------------------
def worker_main(worker, task_json: str) -> int:
    """The child's side: run one measurement and print its result as the MARK line."""
    print(MARK + json.dumps(worker(json.loads(task_json))), flush=True)
    return 0


def run_child(script: str | Path, task: dict, env: dict | None = None, timeout: float = 900) -> dict:
    """Run ``script --worker TASK`` in a fresh process; its JSON result plus its own peak RSS (MiB).

    A fresh process per measurement: contenders never share a heap, a thread pool or spinning
    OpenMP/OpenBLAS threads. On failure: {"error": the output's last lines, **task}.
    """
    cmd = [sys.executable, str(Path(script).resolve()), "--worker", json.dumps(task)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        text = proc.stdout.read()  # until the child closes its output (it exits, or is killed)
    finally:
        timer.cancel()
        proc.stdout.close()
    # reap the child ourselves: wait4 returns that one child's rusage (ru_maxrss in kB on Linux), which is
    # what getrusage(RUSAGE_CHILDREN) would report in a fresh parent, without the max over earlier children
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    rss = ru.ru_maxrss / 1024
    if proc.returncode < 0 and not timer.is_alive() and MARK not in text:
        return {"error": f"killed after {timeout:.0f} s (or by signal {-proc.returncode})", **task}
    result = None
    for line in text.splitlines():
        if line.startswith(MARK):
            result = json.loads(line[len(MARK) :])
    if result is None:
        tail = "\n".join(text.strip().splitlines()[-6:])
        return {"error": tail or f"exit {proc.returncode}", **task}
    result["rss_mib"] = rss
    return result


def set_threads(n: int | None) -> None:
    """OPENBLAS/OMP/MKL_NUM_THREADS for every child started after this (None: the environment as given)."""
    if n:
        for key in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[key] = str(n)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def have_torch() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def torch_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("torch")
    except Exception:  # noqa: BLE001 - not installed, or broken metadata: no version to report
        return None
