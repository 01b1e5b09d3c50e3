"""The training session's parts in process: a mid-epoch stop and restore, gradient accumulation against the large
batch, inference without an optimizer, the data-parallel shares, and the signals' levels."""

import os
import signal

import numpy as np
import pytest

from helpers import load_spec, trainer_for
from nnctl import optimizers, run
from nnctl.session import GO, INTERRUPT, PREEMPT, Signals
from nnctl.strategy import DataParallel
from nnctl.train import Hooks, Trainer


def fit(trainer: Trainer, ds, epochs: int) -> None:
    trainer.fit(ds.x_train, ds.y_train, epochs, ds.x_val, ds.y_val)


def params(trainer: Trainer) -> np.ndarray:
    return np.asarray(trainer.model.flat_params).copy()


def test_stop_mid_epoch_then_restore_continues_exactly(tmp_path):
    spec = load_spec("iris_mlp.toml", tmp_path, "train.epochs=3")
    whole, ds = trainer_for(spec)
    fit(whole, ds, 3)
    calls = []
    stopped, _ = trainer_for(spec, Hooks(should_stop=lambda: calls.append(1) or len(calls) == 9))
    fit(stopped, ds, 3)  # 6 batches per epoch: stops before batch 3 of epoch 2
    assert stopped.state.epoch == 1 and stopped.progress.batch == 2
    snap = stopped.snapshot()
    resumed, _ = trainer_for(spec)
    resumed.restore(snap)
    fit(resumed, ds, 3)
    assert np.array_equal(params(whole), params(resumed))
    timed = ("seconds", "samples_per_second")
    assert {k: v for k, v in whole.state.history.items() if k not in timed} == {
        k: v for k, v in resumed.state.history.items() if k not in timed
    }


@pytest.mark.parametrize(
    "optimizer", ['{type = "adam", learning_rate = 0.01}', '{type = "sgd", learning_rate = 0.1, momentum = 0.9}']
)
def test_gradient_accumulation_equals_the_large_batch(tmp_path, optimizer):
    """K = 5 batches of 8 per step = batches of 40 (96 training rows: a ragged last group of 16), in float64, with
    an L2 penalty (added once per step)."""
    common = [
        "dtype=float64",
        "train.epochs=3",
        f"train.optimizer={optimizer}",
        "model.layers[0].kernel_regularizer={l2 = 0.01}",
    ]
    large, ds = trainer_for(load_spec("iris_mlp.toml", tmp_path, *common, "train.batch_size=40"))
    accumulated, _ = trainer_for(
        load_spec("iris_mlp.toml", tmp_path, *common, "train.batch_size=8", "train.gradient_accumulation=5")
    )
    small, _ = trainer_for(load_spec("iris_mlp.toml", tmp_path, *common, "train.batch_size=8"))
    for t in (large, accumulated, small):
        fit(t, ds, 3)
    assert len(ds.x_train) == 96 and accumulated.optimizer.iterations == large.optimizer.iterations == 9
    np.testing.assert_allclose(params(accumulated), params(large), rtol=0, atol=1e-12)
    np.testing.assert_allclose(accumulated.state.history["loss"], large.state.history["loss"], rtol=1e-12)
    assert not np.allclose(params(small), params(large), atol=1e-3)  # the comparison can fail


def test_evaluate_needs_no_optimizer(tmp_path, monkeypatch):
    spec = load_spec("iris_mlp.toml", tmp_path, "train.epochs=1")
    run.train(spec)
    before = run.evaluate(spec.output.checkpoint)

    def refuse(*args, **kw):
        raise AssertionError("evaluate built an optimizer")

    monkeypatch.setattr(optimizers, "get", refuse)
    assert run.evaluate(spec.output.checkpoint) == before
    assert set(before) >= {"loss", "accuracy", "samples"}


class FakeComm:
    def __init__(self, rank, size):
        self.rank, self.size = rank, size


@pytest.mark.parametrize("rank,rows,want", [(0, 10, (0, 3)), (1, 10, (3, 6)), (2, 10, (6, 10)), (0, 2, (0, 0))])
def test_data_parallel_shares_cover_the_batch(rank, rows, want):
    """Rank r of p takes rows [r*g//p, (r+1)*g//p) and scales its mean gradient by n_r*p/g."""
    shard = DataParallel(FakeComm(rank, 3)).shard(np.arange(100, 100 + rows))
    lo, hi = want
    assert list(shard.rows) == list(range(100 + lo, 100 + hi))
    assert shard.weight == rows
    if hi > lo:
        assert shard.scale == pytest.approx((hi - lo) * 3 / rows)


def test_signal_levels():
    signals = Signals(usr1_preempts=False)
    with signals.installed():
        assert signals.level == GO
        os.kill(os.getpid(), signal.SIGUSR1)
        assert signals.save_requested and signals.level == GO
        os.kill(os.getpid(), signal.SIGINT)
        assert signals.level == INTERRUPT
        os.kill(os.getpid(), signal.SIGTERM)
        assert (signals.level, signals.name) == (PREEMPT, "SIGTERM")
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    preempting = Signals(usr1_preempts=True)
    with preempting.installed():
        os.kill(os.getpid(), signal.SIGUSR1)
        assert (preempting.level, preempting.name, preempting.save_requested) == (PREEMPT, "SIGUSR1", False)


@pytest.mark.parametrize(
    "module", ["assemble", "distributed", "inference", "resume", "run", "scoring", "session", "strategy", "train"]
)
def test_the_library_never_prints_or_exits(module):
    """Printing and exiting belong to the CLI: no print(), sys.exit, sys.stdout/stderr or os._exit here."""
    import ast
    import pathlib

    import nnctl

    path = pathlib.Path(nnctl.__file__).parent / f"{module}.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("print", "exit"):
            found.append(f"{node.func.id}() line {node.lineno}")
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and (node.value.id, node.attr) in (("sys", "exit"), ("sys", "stdout"), ("sys", "stderr"), ("os", "_exit"))
        ):
            found.append(f"{node.value.id}.{node.attr} line {node.lineno}")
    assert found == []
