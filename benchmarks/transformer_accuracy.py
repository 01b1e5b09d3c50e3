#!/usr/bin/env python
"""Test accuracy of the issue-22 transformer encoder (Embedding 64 + PositionEmbedding, one post-norm block
with 2 heads x 32, Dense 128 relu - Dense 64, GlobalAveragePooling1D, Dense 2 softmax; 32 tokens) in nnctl,
Keras 3 and PyTorch, trained on the same learnable synthetic task with the same budget.

    .venv/bin/python benchmarks/transformer_accuracy.py [--seeds 0,1,2] [--epochs 3] [--contenders nnctl,keras,torch]
    .venv/bin/python benchmarks/transformer_accuracy.py --transplant     # Keras's initial weights in nnctl

The task: token ids uniform in [0, 1000); the label is whether ids 1-50 outnumber ids 51-100 in the sequence
(ties: label 0), which needs the embedding to learn two token groups and the pooling to count them. Every
contender gets Adam(1e-3, epsilon 1e-7), batch 64, the same shuffled order per seed. ``--transplant`` copies
the Keras model's initial weights into nnctl and trains both on the same batches: equal loss curves mean the
two compute the same training step, so any accuracy gap comes from the initial weights (their
distributions or the draw) and not from the layers or the optimizer.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
VOCAB, SEQ, D, HEADS, FF, BATCH = 1000, 32, 64, 2, 128, 64


def make_task(n_train=8192, n_test=4096):
    rng = np.random.default_rng(1234)
    x = rng.integers(0, VOCAB, (n_train + n_test, SEQ)).astype(np.int64)
    a = ((x >= 1) & (x <= 50)).sum(1)
    b = ((x >= 51) & (x <= 100)).sum(1)
    y = (a > b).astype(np.int64)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


LAYERS = [
    {"type": "Embedding", "input_dim": VOCAB, "output_dim": D, "name": "embedding"},
    {"type": "PositionEmbedding", "name": "pos"},
    {"type": "MultiHeadAttention", "num_heads": HEADS, "key_dim": D // HEADS, "name": "attn"},
    {"type": "Add", "inputs": ["pos", "attn"], "name": "add"},
    {"type": "LayerNormalization", "name": "norm_a"},
    {"type": "Dense", "units": FF, "activation": "relu", "name": "ff1"},
    {"type": "Dense", "units": D, "name": "ffn"},
    {"type": "Add", "inputs": ["norm_a", "ffn"], "name": "add_1"},
    {"type": "LayerNormalization", "name": "norm_b"},
    {"type": "GlobalAveragePooling1D", "name": "gap"},
    {"type": "Dense", "units": 2, "activation": "softmax", "name": "head"},
]


def nnctl_model(seed: int):
    from nnctl import backend as B
    from nnctl import losses, optimizers
    from nnctl.build import build_model
    from nnctl.spec import validate
    from nnctl.train import Trainer

    B.use("cpu")
    raw = {
        "name": "transformer-accuracy",
        "seed": seed,
        "data": {"train": "synthetic"},
        "model": {"layers": [dict(e) for e in LAYERS]},
        "train": {"loss": "sparse_categorical_crossentropy", "optimizer": {"type": "adam"}, "batch_size": BATCH},
    }
    spec = validate(raw, source="transformer_accuracy")
    net = build_model(spec, (SEQ,), seed, input_dtype=np.int64)
    net.to_device()
    opt = optimizers.get("adam", learning_rate=1e-3, epsilon=1e-7)
    loss = losses.get("sparse_categorical_crossentropy")
    return net, Trainer(net, loss, opt, spec["train"], "sparse", 2, seed)


def nnctl_train(net, trainer, x, y, orders):
    curve = []
    for order in orders:
        for s in range(0, len(x) - BATCH + 1, BATCH):
            idx = order[s : s + BATCH]
            value, _ = trainer.loss_and_grad(x[idx], y[idx])
            trainer.optimizer.step(net.flat_params, net.flat_grads, net.slices.values(), lr=1e-3)
            curve.append(float(value))
    return curve


def nnctl_accuracy(net, x, y):
    return float((np.asarray(net.predict(x)).argmax(1) == y).mean())


def keras_model(seed: int):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    from keras import layers as L

    keras.utils.set_random_seed(seed)

    class PositionEmbedding(L.Layer):
        def build(self, input_shape):
            self.p = self.add_weight(shape=tuple(input_shape[1:]), initializer="glorot_uniform", name="embeddings")

        def call(self, x):
            return x + self.p

    ids = keras.Input((SEQ,), dtype="int64")
    emb = L.Embedding(VOCAB, D, name="embedding")
    pos = PositionEmbedding(name="pos")
    mha = L.MultiHeadAttention(HEADS, D // HEADS, name="attn")
    na, nb = L.LayerNormalization(name="norm_a"), L.LayerNormalization(name="norm_b")
    f1, f2, head = (
        L.Dense(FF, activation="relu", name="ff1"),
        L.Dense(D, name="ffn"),
        L.Dense(2, activation="softmax", name="head"),
    )
    h = pos(emb(ids))
    a = na(h + mha(h, h))
    out = head(L.GlobalAveragePooling1D()(nb(a + f2(f1(a)))))
    net = keras.Model(ids, out)
    net.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-7), loss="sparse_categorical_crossentropy")
    return net


def keras_train(net, x, y, orders):
    curve = []
    for order in orders:
        for s in range(0, len(x) - BATCH + 1, BATCH):
            idx = order[s : s + BATCH]
            curve.append(float(net.train_on_batch(x[idx], y[idx])))
    return curve


def keras_weights(net) -> dict:
    """Keras's weights under nnctl's parameter names (same shapes: both follow Keras's layouts)."""
    out = {}
    for layer in net.layers:
        for w in layer.weights:
            key = w.path.split("/")
            name = key[-1]
            if layer.name == "attn":  # attn/query/kernel -> attn/query_kernel; attn/attention_output -> output
                sub = key[-2].replace("attention_output", "output")
                out[f"attn/{sub}_{name}"] = np.asarray(w.numpy())
            else:
                out[f"{layer.name}/{name}"] = np.asarray(w.numpy())
    return out


def torch_model(seed: int):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    torch.set_num_threads(1)

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(VOCAB, D)
            self.pos = nn.Parameter(nn.init.xavier_uniform_(torch.empty(SEQ, D)))
            self.block = nn.TransformerEncoderLayer(D, HEADS, FF, dropout=0.0, layer_norm_eps=1e-3, batch_first=True)
            self.head = nn.Linear(D, 2)

        def forward(self, ids):
            return self.head(self.block(self.embed(ids) + self.pos).mean(dim=1))

    net = Encoder()
    return net, torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)


def torch_train(net, opt, x, y, orders):
    import torch

    lossf = torch.nn.CrossEntropyLoss()
    curve = []
    for order in orders:
        for s in range(0, len(x) - BATCH + 1, BATCH):
            idx = order[s : s + BATCH]
            opt.zero_grad()
            loss = lossf(net(torch.from_numpy(x[idx])), torch.from_numpy(y[idx]))
            loss.backward()
            opt.step()
            curve.append(loss.item())
    return curve


def torch_accuracy(net, x, y):
    import torch

    with torch.no_grad():
        return float((net(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--contenders", default="nnctl,keras,torch")
    ap.add_argument("--transplant", action="store_true")
    args = ap.parse_args(argv)
    xtr, ytr, xte, yte = make_task()
    print(f"task: {len(xtr)} train, {len(xte)} test, positive rate {ytr.mean():.3f}")
    if args.transplant:
        knet = keras_model(0)
        net, trainer = nnctl_model(0)
        params = net.named_params()
        kw = keras_weights(knet)
        assert set(kw) == set(params), sorted(set(kw) ^ set(params))
        for k, v in kw.items():
            params[k][...] = v.reshape(params[k].shape)
        orders = [np.random.default_rng(e).permutation(len(xtr)) for e in range(args.epochs)]
        kc = keras_train(knet, xtr, ytr, orders)
        nc = nnctl_train(net, trainer, xtr, ytr, orders)
        for i in list(range(0, len(kc), max(1, len(kc) // 12))) + [len(kc) - 1]:
            print(f"  step {i:4d}: loss keras {kc[i]:.5f}  nnctl {nc[i]:.5f}")
        kacc = float((knet.predict(xte, verbose=0).argmax(1) == yte).mean())
        print(
            f"test accuracy from the same initial weights: keras {kacc:.4f}, nnctl {nnctl_accuracy(net, xte, yte):.4f}"
        )
        return 0
    results: dict[str, list[float]] = {}
    for seed in map(int, args.seeds.split(",")):
        orders = [np.random.default_rng(100 * seed + e).permutation(len(xtr)) for e in range(args.epochs)]
        for who in args.contenders.split(","):
            if who == "nnctl":
                net, trainer = nnctl_model(seed)
                nnctl_train(net, trainer, xtr, ytr, orders)
                acc = nnctl_accuracy(net, xte, yte)
            elif who == "keras":
                knet = keras_model(seed)
                keras_train(knet, xtr, ytr, orders)
                acc = float((knet.predict(xte, verbose=0).argmax(1) == yte).mean())
            else:
                tnet, opt = torch_model(seed)
                torch_train(tnet, opt, xtr, ytr, orders)
                acc = torch_accuracy(tnet, xte, yte)
            results.setdefault(who, []).append(acc)
            print(f"seed {seed} {who:6s} test accuracy {acc:.4f}", flush=True)
    for who, accs in results.items():
        print(
            f"{who:6s} median {statistics.median(accs):.4f}  range {min(accs):.4f}-{max(accs):.4f}  ({len(accs)} seeds)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
