"""Data parallelism over MPI: 2 ranks under mpiexec train the same weights as 1 process, only rank 0 writes.

Each test starts ``mpiexec -n 2 nnctl train`` in a subprocess (the launcher and console script beside
``sys.executable``: pip install nnctl[mpi] puts mpich's mpiexec there).
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from helpers import checkpoint_arrays
from nnctl.distributed import launched_by_mpi

BIN = pathlib.Path(sys.executable).parent
NNCTL = shutil.which("nnctl", path=str(BIN)) or shutil.which("nnctl")
MPIEXEC = shutil.which("mpiexec", path=str(BIN)) or shutil.which("mpiexec")
HAVE_MPI4PY = importlib.util.find_spec("mpi4py") is not None
needs_mpi = [
    pytest.mark.mpi,
    pytest.mark.skipif(not HAVE_MPI4PY, reason="needs mpi4py: pip install nnctl[mpi]"),
    pytest.mark.skipif(
        MPIEXEC is None or NNCTL is None, reason="needs mpiexec (pip install mpich) and the nnctl console script"
    ),
]


def mpi(fn):
    for mark in needs_mpi:
        fn = mark(fn)
    return fn


SPEC = """\
name = "dp"
seed = 3
dtype = "{dtype}"

[data]
train = "train.csv"
validation = "val.csv"
target = "label"
normalize = "standard"
{augment}
[[model.layers]]
type = "Dense"
units = 16
activation = "relu"
{regularizer}
{dropout}

[[model.layers]]
type = "Dense"
units = 3
activation = "softmax"

[train]
loss = "categorical_crossentropy"
optimizer = {{ type = "adam", learning_rate = 0.01 }}
metrics = ["accuracy"]
epochs = {epochs}
batch_size = 64
shuffle = true

[output]
checkpoint = "model.h5"
"""


def write_data(folder: pathlib.Path, n_train: int = 301, n_val: int = 75) -> None:
    """Three classes from five features; 301 rows make a ragged last batch of 45 (22 + 23 rows per rank)."""
    rng = np.random.default_rng(0)
    for name, n in (("train.csv", n_train), ("val.csv", n_val)):
        x = rng.normal(size=(n, 5))
        y = (x[:, 0] + x[:, 1] * x[:, 2] > 0).astype(int) + (x[:, 3] > 1)
        rows = [",".join(f"{v:.6f}" for v in r) + f",c{c}" for r, c in zip(x, y)]
        (folder / name).write_text("a,b,c,d,e,label\n" + "\n".join(rows) + "\n")


def make_spec(
    folder: pathlib.Path,
    dtype: str = "float64",
    epochs: int = 3,
    n_train: int = 301,
    l2: float = 0.0,
    dropout: float = 0.0,
    noise: float = 0.0,
) -> pathlib.Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_data(folder, n_train)
    spec = folder / "spec.toml"
    regularizer = f"kernel_regularizer = {{ l2 = {l2} }}" if l2 else ""
    augment = f"\n[data.augment]\nnoise = {noise}\n" if noise else ""
    dropout = f'\n[[model.layers]]\ntype = "Dropout"\nrate = {dropout}\n' if dropout else ""
    spec.write_text(SPEC.format(dtype=dtype, epochs=epochs, regularizer=regularizer, augment=augment, dropout=dropout))
    return spec


def train(spec: pathlib.Path, ranks: int | None, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``nnctl train SPEC --json ARGS`` in the spec's folder, under ``mpiexec -n ranks`` unless ranks is None."""
    cmd = [NNCTL, "train", spec.name, "--json", *args]
    if ranks is not None:
        cmd = [MPIEXEC, "-n", str(ranks), *cmd]
    env = {**os.environ, "NNCTL_DEVICE": "cpu"}
    for k in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALRANKID", "SLURM_PROCID"):
        env.pop(k, None)  # a test runner started under a launcher must not make the 1-process run distributed
    proc = subprocess.run(cmd, cwd=spec.parent, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return proc


def events(proc) -> list[dict]:
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def assert_same_weights(a: pathlib.Path, b: pathlib.Path, rtol: float) -> None:
    wa, wb = checkpoint_arrays(a, ("weights",)), checkpoint_arrays(b, ("weights",))
    assert wa.keys() == wb.keys()
    for k in wa:
        scale = max(float(np.abs(wa[k]).max()), 1e-30)
        err = float(np.abs(wa[k] - wb[k]).max()) / scale
        assert err <= rtol, f"{k}: relative difference {err:.3e} > {rtol:g}"


# -- launcher detection (no MPI needed) ---------------------------------------------------------------
def test_launcher_detection():
    assert not launched_by_mpi({})
    assert launched_by_mpi({"PMI_SIZE": "2", "PMI_RANK": "1", "MPI_LOCALRANKID": "1"})
    assert not launched_by_mpi({"PMI_SIZE": "1", "MPI_LOCALRANKID": "0"})  # mpiexec -n 1: a plain run
    assert launched_by_mpi({"OMPI_COMM_WORLD_SIZE": "4"})
    assert launched_by_mpi({"PMIX_RANK": "0"})
    assert launched_by_mpi({"SLURM_NTASKS": "8", "SLURM_PROCID": "3", "SLURM_STEP_ID": "0"})
    assert not launched_by_mpi({"SLURM_NTASKS": "8", "SLURM_PROCID": "0"})  # inside sbatch, not srun


# -- row shares of random draws (no MPI needed) -----------------------------------------------------------
@pytest.mark.parametrize(
    "draw, args, rest",
    [("random", (), (4,)), ("uniform", (-1.0, 2.0), (2,)), ("integers", (0, 5), ()), ("standard_normal", (), (3, 2))],
)
def test_row_shares_draw_the_global_batch(draw, args, rest):
    """Shares [0:3] and [3:7] of a 7-row batch, concatenated, are the 7 rows one Generator draws."""
    from nnctl.rowshare import RowShare

    def rng():
        return np.random.default_rng(11)

    ranks = [RowShare(rng(), (0, 3, 7)), RowShare(rng(), (3, 7, 7))]
    one = rng()
    for _ in range(2):  # the ranks' generators stay in step with the single one
        shares = [getattr(r, draw)(*args, size=(r.share[1] - r.share[0], *rest)) for r in ranks]
        assert [a.shape for a in shares] == [(3, *rest), (4, *rest)]
        np.testing.assert_array_equal(np.concatenate(shares), getattr(one, draw)(*args, size=(7, *rest)))
    assert ranks[0].bit_generator.state == ranks[1].bit_generator.state == one.bit_generator.state
    # a size whose first axis is not the share's rows, or no share, draws as the Generator does
    np.testing.assert_array_equal(ranks[0].random((5, 2)), one.random((5, 2)))
    ranks[0].share = None
    np.testing.assert_array_equal(ranks[0].random(3), one.random(3))


def test_data_parallel_sets_the_shares_of_the_models_streams_and_no_layer_attribute():
    """The strategy reaches the layers' generators through ``Model.streams`` (given to them by the build context):
    every layer keeps the generator object its build gave it, and two ranks' shares of a training forward pass
    (dropout and noise drawn per row) are, stacked, the outputs of one process on the whole batch."""
    from types import SimpleNamespace

    from nnctl import backend as B
    from nnctl.build import build_model
    from nnctl.spec import validate
    from nnctl.strategy import DataParallel

    B.use("cpu")
    raw = {
        "name": "dp",
        "seed": 3,
        "dtype": "float64",
        "data": {"train": "synthetic"},
        "model": {
            "layers": [
                {"type": "Dense", "units": 6, "activation": "tanh"},
                {"type": "Dropout", "rate": 0.5},
                {"type": "GaussianNoise", "stddev": 0.3},
                {"type": "Dense", "units": 2},
            ]
        },
        "train": {"loss": "mse"},
    }

    def model():
        spec = validate(raw, source="dp")
        m = build_model(spec, (4,), spec.seed)
        m.to_device()
        return m

    x = np.random.default_rng(0).normal(size=(7, 4))
    one = model()
    whole = np.concatenate([B.to_numpy(one.forward(x, training=True)) for _ in range(2)])
    shares = []
    for rank in range(2):
        m = model()
        given = [n.layer.rng for n in m.nodes]
        strategy = DataParallel(SimpleNamespace(rank=rank, size=2))
        strategy.attach(SimpleNamespace(model=m, aug_rng=np.random.default_rng(1)))  # type: ignore[arg-type]
        assert all(n.layer.rng is g for n, g in zip(m.nodes, given)) and [id(s) for s in m.streams] == [
            id(g) for g in given
        ]
        rows = strategy.shard(np.arange(7)).rows
        assert all(s.share == (rows[0], rows[-1] + 1, 7) for s in m.streams)
        shares.append([B.to_numpy(m.forward(x[rows], training=True)) for _ in range(2)])
    stacked = np.concatenate([np.concatenate([shares[0][i], shares[1][i]]) for i in range(2)])
    np.testing.assert_allclose(stacked, whole, rtol=1e-12, atol=1e-12)
    assert not np.allclose(whole[:7], whole[7:])  # the two passes drew different masks: the draws are live


# -- equivalence with one process -----------------------------------------------------------------------
@mpi
@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-9), ("float32", 1e-5)])
def test_two_ranks_equal_one_process(tmp_path, dtype, rtol):
    spec = make_spec(tmp_path, dtype)
    one = events(train(spec, None, "-o", "one.h5"))
    two = events(train(spec, 2, "-o", "two.h5"))
    assert_same_weights(tmp_path / "one.h5", tmp_path / "two.h5", rtol)
    # the loss is summed over ranks and validation sees the full set on every rank: the logs agree too
    for a, b in zip(one[:-1], two[:-1]):
        for key in ("loss", "val_loss", "val_accuracy"):
            assert b[key] == pytest.approx(a[key], rel=max(rtol, 1e-12)), key


@mpi
@pytest.mark.parametrize(
    "options",
    [
        # 257 rows: the last global batch has 1 row, so rank 0's share is empty; L2 enters loss and gradient
        {"n_train": 257, "l2": 0.01},
        # each rank draws the masks and noise of the whole global batch and keeps its rows: the draws of
        # 1 process. 301 rows: shares of 32 + 32, then 22 + 23; 257 rows: the last batch leaves rank 0
        # without rows, so it skips that batch's draws and takes the last rank's generator states at the epoch's end
        {"n_train": 301, "dropout": 0.3, "noise": 0.2},
        {"n_train": 257, "dropout": 0.3, "noise": 0.2},
    ],
    ids=["empty_share_l2", "dropout_noise_301", "dropout_noise_257"],
)
def test_ragged_shares_and_random_draws_equal_one_process(tmp_path, options):
    spec = make_spec(tmp_path, **options)
    one = events(train(spec, None, "-o", "one.h5"))
    two = events(train(spec, 2, "-o", "two.h5"))
    assert_same_weights(tmp_path / "one.h5", tmp_path / "two.h5", 1e-9)
    for a, b in zip(one[:-1], two[:-1]):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-12)


@mpi
def test_training_metrics_are_gathered(tmp_path):
    spec = make_spec(tmp_path)
    one = events(train(spec, None, "-o", "one.h5"))
    two = events(train(spec, 2, "-o", "two.h5"))
    for a, b in zip(one[:-1], two[:-1]):
        assert b["accuracy"] == pytest.approx(a["accuracy"], abs=1e-12)


# -- output from rank 0 only ----------------------------------------------------------------------------
@mpi
def test_only_rank_zero_writes(tmp_path):
    spec = make_spec(tmp_path)
    before = {p.name for p in tmp_path.iterdir()}
    out = events(train(spec, 2))
    new = {p.name for p in tmp_path.iterdir()} - before
    assert new == {"model.h5", "model.run"}, new  # one checkpoint, one run folder, no stray temp files
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    epochs = [e["epoch"] for e in out if e["event"] == "epoch"]
    assert epochs == [1, 2, 3]  # each epoch once: the other rank printed nothing
    assert [e["event"] for e in out].count("done") == 1


# -- failures end the whole job ----------------------------------------------------------------------------
@mpi
def test_error_on_one_rank_aborts_all(tmp_path):
    """A rank raising while the other waits in a collective: both end with the error's exit code, no hang."""
    script = tmp_path / "fail.py"
    script.write_text(
        textwrap.dedent("""
        from nnctl.cli.ranks import guard
        from nnctl.distributed import connect
        from nnctl.errors import DataError
        world = connect(force=True)
        with guard(world):
            if world.rank == 1:
                raise DataError("rank one cannot read its data")
            world.comm.Barrier()  # rank 0 would wait here forever without MPI_Abort
    """)
    )
    t0 = time.monotonic()
    proc = subprocess.run([MPIEXEC, "-n", "2", sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert time.monotonic() - t0 < 30
    assert proc.returncode == 2, proc.stderr  # DataError's exit code, as in a 1-process run
    assert "error: rank 1 of 2: rank one cannot read its data" in proc.stderr


@mpi
def test_killing_one_rank_ends_the_job(tmp_path):
    spec = make_spec(tmp_path, epochs=100000)
    pidfile = tmp_path / "pid"
    env = {**os.environ, "NNCTL_DEVICE": "cpu", "NNCTL_TEST_PIDFILE": str(pidfile)}
    proc = subprocess.Popen(
        [MPIEXEC, "-n", "2", NNCTL, "train", spec.name, "--json"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = json.loads(proc.stdout.readline())
        assert first["event"] == "epoch"
        victim = int(pathlib.Path(f"{pidfile}.1").read_text())
        os.kill(victim, signal.SIGKILL)
        t0 = time.monotonic()
        proc.wait(timeout=10)
        assert time.monotonic() - t0 < 10
        assert proc.returncode != 0
        survivor = int(pathlib.Path(f"{pidfile}.0").read_text())
        with pytest.raises(ProcessLookupError):
            os.kill(survivor, 0)  # rank 0 is gone too, not left waiting in an allreduce
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- resume ---------------------------------------------------------------------------------------------
@mpi
def test_resume_under_mpiexec(tmp_path):
    spec = make_spec(tmp_path, epochs=4)
    train(spec, 2, "-o", "whole.h5")
    train(spec, 2, "-o", "part.h5", "--epochs", "2")
    resumed = events(train(spec, 2, "-o", "part.h5", "--resume", "part.h5"))
    assert [e["epoch"] for e in resumed if e["event"] == "epoch"] == [3, 4]
    assert_same_weights(tmp_path / "whole.h5", tmp_path / "part.h5", 0.0)  # bit-identical on the CPU


@mpi
def test_resume_with_dropout_under_mpiexec(tmp_path):
    """Rank 0's generator states in the checkpoint are every rank's, also after a batch without rows on rank 0."""
    spec = make_spec(tmp_path, epochs=4, n_train=257, dropout=0.3, noise=0.2)
    train(spec, 2, "-o", "whole.h5")
    train(spec, 2, "-o", "part.h5", "--epochs", "2")
    train(spec, 2, "-o", "part.h5", "--resume", "part.h5")
    assert_same_weights(tmp_path / "whole.h5", tmp_path / "part.h5", 0.0)


@mpi
def test_stop_vote_is_the_same_on_every_rank(tmp_path):
    """Ranks asking to stop at different batches all stop at the same one: the batch after the first ask."""
    script = tmp_path / "vote.py"
    script.write_text(
        textwrap.dedent("""
        from nnctl.cli.ranks import guard
        from nnctl.distributed import connect
        world = connect(force=True)
        asks = {0: 7, 1: 5}[world.rank]  # rank 1 gets Ctrl-C first
        with guard(world):
            for batch in range(100):
                if world.agree_stop(batch >= asks):
                    break
            stops = world.comm.allgather(batch)
        if world.rank == 0:
            print(stops)
    """)
    )
    proc = subprocess.run([MPIEXEC, "-n", "2", sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[6, 6]"


@mpi
def test_ctrl_c_writes_the_checkpoint_and_exits_130(tmp_path):
    spec = make_spec(tmp_path, epochs=100000)
    proc = subprocess.Popen(
        [MPIEXEC, "-n", "2", NNCTL, "train", spec.name, "--json"],
        cwd=tmp_path,
        env={**os.environ, "NNCTL_DEVICE": "cpu"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert json.loads(proc.stdout.readline())["event"] == "epoch"
        proc.send_signal(signal.SIGINT)  # mpiexec forwards it to every rank
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert err.count("error: interrupted: wrote") == 1, err
    assert (tmp_path / "model.h5").exists()


def test_wrapped_layers_draw_from_their_wrappers_stream():
    """TimeDistributed's inner layer and Bidirectional's two sublayers get the wrapper's stream through the build
    context (ctx.child), so a data-parallel share set on Model.streams reaches them with nothing reassigned."""
    from nnctl import backend as B
    from nnctl.build import build_model
    from nnctl.rowshare import RowShare
    from nnctl.spec import validate

    B.use("cpu")
    raw = {
        "name": "wrapped",
        "data": {"train": "synthetic"},
        "model": {
            "layers": [
                {"type": "TimeDistributed", "layer": {"type": "Dropout", "rate": 0.5}},
                {"type": "Bidirectional", "layer": {"type": "LSTM", "units": 3, "dropout": 0.2}},
                {"type": "Dense", "units": 1},
            ]
        },
        "train": {"loss": "mse"},
    }
    spec = validate(raw, source="wrapped")
    m = build_model(spec, (5, 4), spec.seed)
    td, bi = m.nodes[0].layer, m.nodes[1].layer
    assert isinstance(td.rng, RowShare) and td.inner.rng is td.rng
    assert bi.forward_layer.rng is bi.rng and bi.backward_layer.rng is bi.rng
    assert {id(td.rng), id(bi.rng)} <= {id(s) for s in m.streams}
