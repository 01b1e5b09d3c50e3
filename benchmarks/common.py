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
# NNCTL_BENCH_TREE: import nnctl from another source tree (run.py --baseline: the same benchmark code
# times an older nnctl, so a before/after table comes from one run)
TREE = os.environ.get("NNCTL_BENCH_TREE") or str(ROOT)
if TREE not in sys.path:
    sys.path.insert(0, TREE)

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
def _conv(filters: int) -> dict:
    return {"type": "Conv2D", "filters": filters, "kernel_size": 3, "activation": "relu"}


POOL = {"type": "MaxPooling2D", "pool_size": 2}
SOFTMAX10 = {"type": "Dense", "units": 10, "activation": "softmax"}
VOCAB = 1000  # transformer rows: token ids in [0, VOCAB)


def transformer_layers(d_model: int, heads: int, ff: int, classes: int = 2) -> list[dict]:
    """One post-norm encoder block: Embedding(VOCAB, d) + PositionEmbedding, MultiHeadAttention (heads x
    d/heads) + residual + LayerNormalization, Dense(ff, relu)-Dense(d) + residual + LayerNormalization,
    GlobalAveragePooling1D, Dense(classes, softmax)."""
    return [
        {"type": "Embedding", "input_dim": VOCAB, "output_dim": d_model},
        {"type": "PositionEmbedding", "name": "pos"},
        {"type": "MultiHeadAttention", "num_heads": heads, "key_dim": d_model // heads, "name": "attn"},
        {"type": "Add", "inputs": ["pos", "attn"]},
        {"type": "LayerNormalization", "name": "norm_a"},
        {"type": "Dense", "units": ff, "activation": "relu"},
        {"type": "Dense", "units": d_model, "name": "ffn"},
        {"type": "Add", "inputs": ["norm_a", "ffn"]},
        {"type": "LayerNormalization"},
        {"type": "GlobalAveragePooling1D"},
        {"type": "Dense", "units": classes, "activation": "softmax"},
    ]


# the issue-22 transformer row: Embedding 64, 2 heads, 32 tokens, a 128-unit feed-forward
TRANSFORMER = {"d_model": 64, "heads": 2, "ff": 128, "seq": 32}

NNCTL_LAYERS = {
    "mlp": [
        {"type": "Dense", "units": 256, "activation": "relu"},
        {"type": "Dense", "units": 128, "activation": "relu"},
        SOFTMAX10,
    ],
    # the benchmark CNN
    "cnn": [
        _conv(32),
        _conv(64),
        POOL,
        {"type": "Flatten"},
        {"type": "Dense", "units": 128, "activation": "relu"},
        SOFTMAX10,
    ],
    # the notes' MNIST CNN (shared/seeds: Conv2D 64 -> MaxPool -> Conv2D 32 -> Flatten -> Dense 10; the
    # notes' Dense(10, relu) under categorical cross-entropy is taken as the softmax it means)
    "mnist_cnn": [_conv(64), POOL, _conv(32), {"type": "Flatten"}, SOFTMAX10],
    # the notes' 32x32x3 CNN (specs/cifar_style_cnn.toml)
    "cifar_cnn": [
        _conv(32),
        _conv(64),
        POOL,
        _conv(128),
        POOL,
        {"type": "Flatten"},
        {"type": "Dense", "units": 64, "activation": "relu"},
        SOFTMAX10,
    ],
    "lstm": [{"type": "LSTM", "units": 64}, {"type": "Dense", "units": 1}],
    "gru": [{"type": "GRU", "units": 64}, {"type": "Dense", "units": 1}],
    "transformer": transformer_layers(TRANSFORMER["d_model"], TRANSFORMER["heads"], TRANSFORMER["ff"]),
}
INPUT_SHAPE = {
    "mlp": (784,),
    "cnn": (28, 28, 1),
    "mnist_cnn": (28, 28, 1),
    "cifar_cnn": (32, 32, 3),
    "lstm": (50, 8),
    "gru": (50, 8),
    "transformer": (TRANSFORMER["seq"],),
}
SCE = "sparse_categorical_crossentropy"
LOSS = {m: "mse" if m in ("lstm", "gru") else SCE for m in NNCTL_LAYERS}
CLASSES = {
    m: None if m in ("lstm", "gru") else 2 if m == "transformer" else 10 for m in NNCTL_LAYERS
}  # None: regression
# the batch of each model's first row (the notes' MNIST CNN also runs at 128, see run.py)
BATCH = {"mlp": 128, "cnn": 128, "mnist_cnn": 32, "cifar_cnn": 32, "lstm": 64, "gru": 64, "transformer": 64}
INT_INPUT = ("transformer",)  # token ids, int64


def make_data(model: str, n: int):
    """Synthetic host arrays for one of the models above, identical in every child (fixed seed)."""
    import numpy as np

    rng = np.random.default_rng(1234)
    if model in INT_INPUT:
        x = rng.integers(0, VOCAB, (n, *INPUT_SHAPE[model])).astype(np.int64)
        return x, rng.integers(0, CLASSES[model], n).astype(np.int64)
    x = rng.random((n, *INPUT_SHAPE[model]), dtype=np.float32)
    if CLASSES[model] is None:  # a sequence regression: the mean of the last 5 steps' first feature
        x -= 0.5
        y = x[:, -5:, 0].mean(axis=1, keepdims=True).astype(np.float32)
    else:
        y = rng.integers(0, CLASSES[model], n).astype(np.int64)
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
    net = build_model(spec, input_shape, spec.seed, input_dtype=input_dtype)
    net.to_device()
    task = "regression" if classes is None else "sparse"
    trainer = Trainer(
        net,
        losses.get(loss),
        optimizers.get("adam", learning_rate=1e-3),
        spec.train,
        task,
        classes or 1,
        spec.seed,
    )
    return net, trainer


def nnctl_model(model: str, batch: int, device: str = "cpu", mallopt: bool = True):
    """nnctl_setup for one of the models above."""
    import numpy as np

    return nnctl_setup(
        NNCTL_LAYERS[model],
        INPUT_SHAPE[model],
        LOSS[model],
        CLASSES[model],
        batch,
        device,
        input_dtype=np.int64 if model in INT_INPUT else None,
        mallopt=mallopt,
    )


def torch_transformer(seq: int, d_model: int, heads: int, ff: int, classes: int = 2):
    """The PyTorch twin of transformer_layers: nn.TransformerEncoderLayer, post-norm, no dropout."""
    import torch
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(VOCAB, d_model)
            self.pos = nn.Parameter(nn.init.xavier_uniform_(torch.empty(seq, d_model)))  # PositionEmbedding
            # post-norm (norm_first=False) as the nnctl stack: norm(x + attn(x)), then norm(x + ffn(x));
            # nnctl's LayerNormalization epsilon is Keras's 1e-3; no dropout in either
            self.block = nn.TransformerEncoderLayer(
                d_model, heads, dim_feedforward=ff, dropout=0.0, layer_norm_eps=1e-3, batch_first=True
            )
            self.head = nn.Linear(d_model, classes)

        def forward(self, ids):
            return self.head(self.block(self.embed(ids) + self.pos).mean(dim=1))

    return Encoder()


def torch_model(model: str):
    """The PyTorch twin of one of the models above (images NCHW; logits, the loss applies the softmax)."""
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
    if model == "mnist_cnn":
        return nn.Sequential(
            nn.Conv2d(1, 64, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 32, 3),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(11 * 11 * 32, 10),
        )
    if model == "cifar_cnn":
        return nn.Sequential(
            nn.Conv2d(3, 32, 3),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(6 * 6 * 128, 64),
            nn.ReLU(),
            nn.Linear(64, 10),
        )
    if model == "transformer":
        t = TRANSFORMER
        return torch_transformer(t["seq"], t["d_model"], t["heads"], t["ff"])
    cell = {"lstm": nn.LSTM, "gru": nn.GRU}[model]

    class RecurrentNet(nn.Module):
        def __init__(self):
            super().__init__()
            setattr(self, model, cell(8, 64, batch_first=True))  # net.lstm / net.gru
            self.fc = nn.Linear(64, 1)

        def forward(self, x):
            out, _ = getattr(self, model)(x)
            return self.fc(out[:, -1])  # the last step's h, as Keras's return_sequences=False

    return RecurrentNet()


def keras_model(model: str):
    """The Keras 3 twin of one of the models above (NHWC like nnctl; softmax outputs as the spec), compiled
    with Adam(1e-3, epsilon 1e-7) and the model's loss."""
    import keras
    from keras import layers as L

    keras.utils.set_random_seed(0)

    def conv(f):
        return L.Conv2D(f, 3, activation="relu")

    if model in ("lstm", "gru"):
        body = [(L.LSTM if model == "lstm" else L.GRU)(64), L.Dense(1)]
    elif model == "mlp":
        body = [L.Dense(256, activation="relu"), L.Dense(128, activation="relu"), L.Dense(10, activation="softmax")]
    elif model == "cnn":
        body = [conv(32), conv(64), L.MaxPooling2D(2), L.Flatten(), L.Dense(128, activation="relu")]
        body.append(L.Dense(10, activation="softmax"))
    elif model == "mnist_cnn":
        body = [conv(64), L.MaxPooling2D(2), conv(32), L.Flatten(), L.Dense(10, activation="softmax")]
    elif model == "cifar_cnn":
        body = [conv(32), conv(64), L.MaxPooling2D(2), conv(128), L.MaxPooling2D(2), L.Flatten()]
        body += [L.Dense(64, activation="relu"), L.Dense(10, activation="softmax")]
    else:
        body = None
    if body is not None:
        net = keras.Sequential([keras.Input(INPUT_SHAPE[model]), *body])
    else:  # the transformer: functional, with a learned position embedding
        t = TRANSFORMER

        class PositionEmbedding(L.Layer):
            def build(self, input_shape):
                self.p = self.add_weight(shape=tuple(input_shape[1:]), initializer="glorot_uniform")

            def call(self, x):
                return x + self.p

        ids = keras.Input((t["seq"],), dtype="int64")
        h = PositionEmbedding()(L.Embedding(VOCAB, t["d_model"])(ids))
        a = L.LayerNormalization()(h + L.MultiHeadAttention(t["heads"], t["d_model"] // t["heads"])(h, h))
        f = L.Dense(t["d_model"])(L.Dense(t["ff"], activation="relu")(a))
        out = L.Dense(2, activation="softmax")(L.GlobalAveragePooling1D()(L.LayerNormalization()(a + f)))
        net = keras.Model(ids, out)
    net.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-7), loss=LOSS[model])
    return net


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


def have_keras() -> bool:
    """Keras 3 with its TensorFlow backend (pip install tensorflow-cpu keras)."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("keras", "tensorflow"))


def keras_version() -> str | None:
    try:
        from importlib.metadata import version

        return f"keras {version('keras')}, tensorflow {version('tensorflow-cpu')}"
    except Exception:  # noqa: BLE001 - not installed (or tensorflow rather than tensorflow-cpu)
        try:
            from importlib.metadata import version

            return f"keras {version('keras')}, tensorflow {version('tensorflow')}"
        except Exception:  # noqa: BLE001
            return None


def torch_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("torch")
    except Exception:  # noqa: BLE001 - not installed, or broken metadata: no version to report
        return None
