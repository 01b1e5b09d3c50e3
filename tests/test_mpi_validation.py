"""Validation under data parallelism: each rank runs only its share of the rows, and the reduced loss and the
metrics over the gathered outputs are those of one process on the whole set.

Two ranks are two threads here, with a communicator over a barrier (sums and rank-order concatenation, as
MPI's Allreduce and Allgatherv); the real mpiexec run is tests/test_distributed.py's equivalence tests and
the one below.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import types

import numpy as np
import pytest
from test_distributed import MPIEXEC, NNCTL, make_spec, mpi

from nnctl import spec as spec_mod
from nnctl.assemble import make_loss
from nnctl.build import build_model
from nnctl.outputs import Heads
from nnctl.scoring import evaluate_model
from nnctl.strategy import DataParallel

SPEC = {
    "name": "v",
    "seed": 1,
    "dtype": "float64",
    "data": {"train": "unused.csv"},
    "model": {
        "layers": [
            {"type": "Dense", "units": 8, "activation": "tanh", "kernel_regularizer": {"l2": 0.01}},
            {"type": "Dense", "units": 3, "activation": "softmax"},
        ]
    },
    "train": {"loss": "categorical_crossentropy", "metrics": ["accuracy", "auc"]},
}


class ThreadComm:
    """Two ranks in one process: each collective waits for both threads and combines their parts."""

    def __init__(self, size: int):
        self.size = size
        self.parts: list = [None] * size
        self.barrier = threading.Barrier(size)

    def rank_view(self, rank: int):
        comm = self

        class View:
            def __init__(self):
                self.rank, self.size = rank, comm.size

            def _all(self, value):
                comm.parts[rank] = value
                comm.barrier.wait()
                parts = list(comm.parts)
                comm.barrier.wait()
                return parts

            def reduce_hook(self, values):
                return np.sum(self._all(np.asarray(values, np.float64)), axis=0)

            def gather_hook(self, a):
                return np.concatenate(self._all(np.asarray(a)))

        return View()


def _trainer(spec):
    model = build_model(spec, (4,), seed=1)
    model.to_device()  # as the trainer does: parameters on the active device (the emulated GPU too)
    rows = {"n": 0}
    forward = model.forward

    def counting(x, training=False, **kw):  # the rows this rank runs forward
        rows["n"] += len(x)
        return forward(x, training=training, **kw)

    model.forward = counting
    loss, names = make_loss(spec), spec.train.metrics
    return types.SimpleNamespace(
        model=model,
        loss=loss,
        metric_names=names,
        task="categorical",
        n_classes=3,
        decode=None,
        rows=rows,
        heads=Heads.single(model, loss, names, "categorical", 3),
    )


@pytest.mark.parametrize("n, size", [(75, 2), (10, 3), (1, 2)], ids=["ragged", "three_ranks", "empty_share"])
def test_each_rank_scores_its_share_and_the_logs_are_one_process(n, size):
    spec = spec_mod.validate(SPEC)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4))
    y = np.eye(3)[rng.integers(0, 3, n)]
    one = _trainer(spec)
    want = evaluate_model(one.model, one.loss, x, y, one.metric_names, "categorical", 3, None, 16)  # Trainer.evaluate
    comm = ThreadComm(size)
    trainers = [_trainer(spec) for _ in range(size)]
    got: list = [None] * size

    def rank(r):
        got[r] = DataParallel(comm.rank_view(r)).evaluate(trainers[r], x, y, batch_size=16)

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert [t.rows["n"] for t in trainers] == [(r + 1) * n // size - r * n // size for r in range(size)]
    for logs in got:
        assert logs.keys() == want.keys() == {"loss", "accuracy", "auc"}
        for k in want:
            assert logs[k] == pytest.approx(want[k], rel=1e-12), k
    # the reference itself: mean cross-entropy plus the L2 penalty, from the model's outputs
    p = one.model.predict(x)
    penalty = 0.01 * float(np.sum(one.model.nodes[0].layer.params["kernel"] ** 2))
    assert want["loss"] == pytest.approx(float(-np.mean(np.sum(y * np.log(p), axis=1))) + penalty, rel=1e-9)
    assert want["accuracy"] == pytest.approx(float(np.mean(p.argmax(1) == y.argmax(1))))


@mpi
def test_lr_find_under_mpiexec_sweeps_the_losses_of_one_process(tmp_path):
    spec = make_spec(tmp_path, l2=0.01, dropout=0.2)  # 301 rows: the batches of 64 split 32 + 32, then 22 + 23
    cmd = [NNCTL, "lr-find", spec.name, "--json", "--no-png", "--steps", "20", "--end", "1"]
    env = {**os.environ, "NNCTL_DEVICE": "cpu"}
    for k in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALRANKID", "SLURM_PROCID"):
        env.pop(k, None)
    runs = [
        subprocess.run(c, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
        for c in (cmd, [MPIEXEC, "-n", "2", *cmd])
    ]
    for r in runs:
        assert r.returncode == 0, r.stderr
    one, two = (json.loads(r.stdout) for r in runs)  # rank 1 printed nothing: one JSON object
    assert two["steps"] == one["steps"] == 20
    assert two["losses"] == pytest.approx(one["losses"], rel=1e-9)
    assert two["suggestion"] == pytest.approx(one["suggestion"], rel=1e-12)
