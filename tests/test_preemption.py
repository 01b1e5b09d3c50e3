"""Preemption from the CLI (subprocesses): SIGTERM mid-epoch writes a checkpoint and exits 143, and the resumed
run equals an uninterrupted one bit for bit; step checkpoints; ``--resume auto``; ``--resume CKPT`` with no spec."""

import json
import os
import shlex
import signal
import subprocess
import sys

import numpy as np
import pytest

from helpers import SPECS, checkpoint_arrays, signalled_after_first_epoch
from nnctl.checkpoint import Checkpoint

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="POSIX signals")

# the CLI with Trainer.after_step patched: after optimizer step argv[2] the process sends itself signal argv[1]
# (a real signal, delivered at a known step, so no test depends on timing)
SIGNAL_AT_STEP = """
import os, signal, sys
from nnctl.train import Trainer
sig, at = getattr(signal, sys.argv[1]), int(sys.argv[2])
real = Trainer.after_step
def after_step(self):
    real(self)
    if self.optimizer.iterations == at:
        os.kill(os.getpid(), sig)
Trainer.after_step = after_step
sys.argv = ["nnctl"] + sys.argv[3:]
from nnctl.cli.main import run
run()
"""

SPEC = """\
name = "pre"
seed = 5
[data]
train = "{data}"
target = "species"
validation = {{ split = 0.25 }}
normalize = "standard"
[[model.layers]]
type = "Dense"
units = 12
activation = "relu"
[[model.layers]]
type = "Dropout"
rate = 0.3
[[model.layers]]
type = "GaussianNoise"
stddev = 0.1
[[model.layers]]
type = "Dense"
units = 3
activation = "softmax"
[train]
loss = "categorical_crossentropy"
optimizer = {{ type = "adam", learning_rate = 0.01 }}
metrics = ["accuracy"]
epochs = 3
batch_size = 8
"""  # 90 training rows in batches of 8: 12 batches per epoch


def nnctl(*args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "nnctl", *map(str, args)], capture_output=True, text=True, timeout=timeout
    )


def signalled(sig: str, step: int, *args):
    return subprocess.run(
        [sys.executable, "-c", SIGNAL_AT_STEP, sig, str(step), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "pre.toml"
    path.write_text(SPEC.format(data=SPECS.parent / "examples" / "data" / "iris.csv"))
    return path


def history(path) -> dict:
    """Every logged value that does not measure time."""
    return {
        k: v
        for k, v in Checkpoint(path).history.items()
        if k not in ("seconds", "samples_per_second", "allreduce_seconds")
    }


def assert_same_run(a, b):
    x, y = checkpoint_arrays(a), checkpoint_arrays(b)
    assert x.keys() == y.keys()
    for k in x:
        assert np.array_equal(x[k], y[k]), k  # bit-identical on the CPU
    assert history(a) == history(b)
    assert Checkpoint(a).optimizer["iterations"] == Checkpoint(b).optimizer["iterations"]


@pytest.mark.parametrize("step,batch", [(17, 5), (12, 0)], ids=["inside_epoch_2", "before_its_first_batch"])
def test_sigterm_mid_epoch_checkpoints_exits_143_and_resumes_bit_identically(tmp_path, spec, step, batch):
    """Step 17 is batch 5 of 12 of epoch 2; after step 12 (epoch 1's last) the stop comes as epoch 2 begins,
    its order already drawn."""
    whole, part = tmp_path / "whole.h5", tmp_path / "part.h5"
    assert nnctl("train", spec, "--out", whole, "-q").returncode == 0
    p = signalled("SIGTERM", step, "train", spec, "--out", part, "-q")
    assert p.returncode == 143, p.stderr
    line = p.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert line.startswith(f"error: terminated by SIGTERM: wrote {part} in epoch 2 at batch {batch}; continue: ")
    command = shlex.split(line.split("continue: ", 1)[1])
    assert command == ["nnctl", "train", str(spec), "--resume", str(part)]
    ck = Checkpoint(part)
    assert ck.epoch == 1 and ck.resume["info"]["position"]["batch"] == batch and ck.optimizer["iterations"] == step
    assert not (tmp_path / "part.run").exists()  # the run folder is written when the run ends
    p = nnctl(*command[1:], "--json")
    assert p.returncode == 0, p.stderr
    events = [json.loads(line) for line in p.stdout.splitlines()]
    assert events[0] == {"event": "resume", "checkpoint": str(part), "epoch": 1, "batch": batch}
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [2, 3]
    assert_same_run(whole, part)


def test_sigterm_twice_in_one_epoch_still_resumes_exactly(tmp_path, spec):
    """A resumed mid-epoch run preempted again in the same epoch keeps the batches of both pieces."""
    whole, part = tmp_path / "whole.h5", tmp_path / "part.h5"
    assert nnctl("train", spec, "--out", whole, "-q").returncode == 0
    assert signalled("SIGTERM", 14, "train", spec, "--out", part, "-q").returncode == 143
    p = signalled("SIGTERM", 20, "train", spec, "--resume", part, "-q")
    assert p.returncode == 143, p.stderr
    assert Checkpoint(part).resume["info"]["position"]["batch"] == 8
    assert nnctl("train", spec, "--resume", part, "-q").returncode == 0
    assert_same_run(whole, part)


def test_usr1_checkpoints_and_exits_only_when_asked(tmp_path, spec):
    out = tmp_path / "u.h5"
    p = signalled("SIGUSR1", 17, "train", spec, "--out", out, "-q", "--checkpoint-on-signal")
    assert p.returncode == 143, p.stderr
    assert "terminated by SIGUSR1" in p.stderr and p.stderr.strip().endswith("--checkpoint-on-signal")
    assert Checkpoint(out).resume["info"]["position"]["batch"] == 5
    # without the flag SIGUSR1 asks for a checkpoint of the last finished epoch and the run goes on
    p = signalled("SIGUSR1", 17, "train", spec, "--out", out, "--json")
    assert p.returncode == 0, p.stderr
    events = [json.loads(line) for line in p.stdout.splitlines()]
    assert {"event": "checkpoint", "reason": "SIGUSR1", "checkpoint": str(out), "epoch": 1} in events


@pytest.mark.parametrize(
    "every,kill,step,batch", [(5, 23, 20, 8), (6, 14, 12, 12)], ids=["inside_an_epoch", "after_its_last_batch"]
)
def test_step_checkpoints_survive_a_kill(tmp_path, spec, every, kill, step, batch):
    """checkpoint_every_steps and SIGKILL a few steps later: the last step checkpoint resumes to the same run
    (step 12 is epoch 1's last batch, written before the epoch's logs)."""
    whole, part = tmp_path / "whole.h5", tmp_path / "part.h5"
    assert nnctl("train", spec, "--out", whole, "-q").returncode == 0
    steps = f"train.checkpoint_every_steps={every}"
    p = signalled("SIGKILL", kill, "train", spec, "--out", part, "-q", "--set", steps)
    assert p.returncode == -signal.SIGKILL
    ck = Checkpoint(part)
    assert ck.optimizer["iterations"] == step and ck.resume["info"]["position"]["batch"] == batch
    assert nnctl("train", spec, "--resume", part, "-q", "--set", steps).returncode == 0
    assert_same_run(whole, part)


def test_resume_auto_takes_the_newest_readable_checkpoint(tmp_path, spec):
    out = tmp_path / "auto.h5"
    args = ["train", spec, "--out", out, "--resume", "auto", "--json"]
    p = nnctl(*args, "--epochs", "2", "--set", "train.save_every=1")  # nothing yet: a fresh start
    assert p.returncode == 0, p.stderr
    events = [json.loads(line) for line in p.stdout.splitlines()]
    assert events[0]["event"] == "note" and "starting fresh" in events[0]["message"]
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [1, 2]
    second = tmp_path / "auto.epoch002.h5"
    assert second.exists() and (tmp_path / "auto.epoch001.h5").exists()
    # the newest file is damaged (a node died mid-copy): it is passed over with a note, epoch 2's copy is used
    out.write_bytes(out.read_bytes()[:1000])
    newest = second.stat().st_mtime + 10
    os.utime(out, (newest, newest))
    p = nnctl(*args, "--epochs", "3")
    assert p.returncode == 0, p.stderr
    events = [json.loads(line) for line in p.stdout.splitlines()]
    assert events[0]["event"] == "note" and events[0]["message"].startswith(f"--resume auto: skipped {out}: ")
    assert events[1] == {"event": "resume", "checkpoint": str(second), "epoch": 2}
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [3]
    assert Checkpoint(out).epoch == 3
    # the notes reach the terminal too (stderr), without --json
    out.write_bytes(b"not hdf5")
    os.utime(out, (newest + 10, newest + 10))
    p = nnctl("train", spec, "--out", out, "--resume", "auto", "--epochs", "3")
    assert p.returncode == 0 and f"note: --resume auto: skipped {out}: " in p.stderr


def test_resume_without_a_spec_uses_the_stored_one(tmp_path):
    whole, part = tmp_path / "whole.h5", tmp_path / "part.h5"
    iris = SPECS / "iris_mlp.toml"
    assert nnctl("train", iris, "--out", whole, "--epochs", "3", "-q").returncode == 0
    assert nnctl("train", iris, "--out", part, "--epochs", "1", "-q").returncode == 0
    p = nnctl("train", "--resume", part, "--epochs", "3", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.splitlines()[-1])["checkpoint"] == str(part)
    x, y = checkpoint_arrays(whole), checkpoint_arrays(part)
    assert all(np.array_equal(x[k], y[k]) for k in x)
    # a usage mistake is one line and exit 2
    p = nnctl("train", "--resume", "auto")
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "SPEC" in p.stderr


MPI_RANK0_SIGNAL = SIGNAL_AT_STEP.replace(
    "self.optimizer.iterations == at", "self.optimizer.iterations == at and self.strategy.rank == 0"
)


@pytest.mark.mpi
def test_sigterm_on_one_rank_under_mpiexec_checkpoints_and_resumes(tmp_path, spec):
    """Only rank 0 gets SIGTERM: the ranks agree to stop at the same batch, rank 0 writes, the job exits 143."""
    import shutil

    bin_dir = os.path.dirname(sys.executable)
    mpiexec, console = shutil.which("mpiexec", path=bin_dir), shutil.which("nnctl", path=bin_dir)
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        pytest.skip("needs mpi4py: pip install nnctl[mpi]")
    if mpiexec is None or console is None:
        pytest.skip("needs mpiexec (pip install mpich) and the nnctl console script")
    env = {**os.environ, "NNCTL_DEVICE": "cpu"}

    def job(*args):
        return subprocess.run(
            [mpiexec, "-n", "2", *map(str, args)], capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path
        )

    assert job(console, "train", spec, "-o", "whole.h5", "-q").returncode == 0
    p = job(sys.executable, "-c", MPI_RANK0_SIGNAL, "SIGTERM", "17", "train", spec, "-o", "part.h5", "-q")
    assert p.returncode == 143, p.stderr
    assert p.stderr.count("error: terminated by SIGTERM: wrote") == 1, p.stderr
    assert Checkpoint(tmp_path / "part.h5").resume["info"]["position"] is not None
    assert job(console, "train", spec, "--resume", "part.h5", "-q").returncode == 0
    x, y = checkpoint_arrays(tmp_path / "whole.h5"), checkpoint_arrays(tmp_path / "part.h5")
    assert all(np.array_equal(x[k], y[k]) for k in x)  # the weights bit for bit
    # the logged loss of the cut epoch sums the ranks' batch losses in another order: equal to rounding
    for k, v in history(tmp_path / "whole.h5").items():
        assert history(tmp_path / "part.h5")[k] == pytest.approx(v, rel=1e-12), k


def test_sbatch_script_requeues_on_143_only(tmp_path):
    """examples/slurm/train.sbatch with stand-ins for srun, scontrol and nnctl: 143 requeues, 2 does not."""
    script = SPECS.parent / "examples" / "slurm" / "train.sbatch"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls"
    fakes = {
        "srun": 'echo "srun $*" >> "$LOG"; while [ "${1#-}" != "$1" ]; do shift; done; exec "$@"',
        "scontrol": 'echo "scontrol $*" >> "$LOG"',
        "nnctl": 'echo "nnctl $*" >> "$LOG"; exit "$CODE"',
    }
    for name, body in fakes.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "LOG": str(log),
        "SPEC": "s.toml",
        "SLURM_JOB_ID": "42",
        "SLURM_NTASKS": "8",
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_CPUS_PER_TASK": "8",
    }
    p = subprocess.run(["bash", str(script)], env={**env, "CODE": "143"}, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    calls = log.read_text().splitlines()
    assert calls[0].startswith("srun --mpi=pmix ")
    assert calls[1] == "nnctl train s.toml --resume auto --device gpu --checkpoint-on-signal --json"
    assert calls[2] == "scontrol requeue 42"
    log.unlink()
    p = subprocess.run(["bash", str(script)], env={**env, "CODE": "2"}, capture_output=True, text=True)
    assert p.returncode == 2 and "scontrol" not in log.read_text()


def test_sigterm_from_outside_exits_143_with_a_resumable_checkpoint(tmp_path):
    """A SIGTERM sent by another process (as a scheduler does) at an unknown batch."""
    out = tmp_path / "long.h5"
    returncode, err = signalled_after_first_epoch(out, signal.SIGTERM)
    assert returncode == 143, err
    assert err.strip().splitlines()[-1].startswith(f"error: terminated by SIGTERM: wrote {out} in epoch ")
    ck = Checkpoint(out)
    assert ck.epoch >= 1 and ck.resume is not None
    p = nnctl("train", "--resume", out, "--epochs", str(ck.epoch + 1), "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.splitlines()[-1])["epochs_run"] == ck.epoch + 1


def test_mid_epoch_resume_with_another_batch_size_is_refused(tmp_path, spec):
    out = tmp_path / "b.h5"
    assert signalled("SIGTERM", 17, "train", spec, "--out", out, "-q").returncode == 143
    p = nnctl("train", spec, "--resume", out, "--set", "train.batch_size=16")
    assert p.returncode == 2
    assert p.stderr.strip() == (
        "error: the checkpoint stopped inside epoch 2, over 90 rows in batches of 8; this run "
        "has 90 rows in batches of 16: resume with the same data and train.batch_size"
    )
