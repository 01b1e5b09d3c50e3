"""Resume in place from the CLI, and the Ctrl-C and divergence messages that say how to continue."""

import json
import shlex
import signal
import subprocess
import sys

import pytest

from helpers import ENDLESS_ARGS, SPECS, signalled_after_first_epoch
from nnctl.checkpoint import Checkpoint

DIVERGE = ["--set", 'train.optimizer={type = "sgd", learning_rate = 1e12}']


def nnctl(*args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "nnctl", *map(str, args)], capture_output=True, text=True, timeout=300, **kw
    )


def test_resume_without_out_continues_in_the_checkpoint(tmp_path):
    x, default = tmp_path / "xa.h5", tmp_path / "default.h5"
    spec = [SPECS / "iris_mlp.toml", "--set", f"output.checkpoint={default}"]
    assert nnctl("train", *spec, "--out", x, "--epochs", "1", "-q").returncode == 0
    before = Checkpoint(x).epoch
    p = nnctl("train", *spec, "--resume", x, "--epochs", "3", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.splitlines()[-1])["checkpoint"] == str(x)
    assert (before, Checkpoint(x).epoch) == (1, 3)
    assert not default.exists()  # the spec's own checkpoint is not touched


def test_divergence_before_any_epoch_says_no_checkpoint_was_written(tmp_path):
    out = tmp_path / "d.h5"
    p = nnctl("train", SPECS / "iris_mlp.toml", "--out", out, *DIVERGE, "--epochs", "3")
    assert p.returncode == 3
    assert p.stderr.splitlines() == [p.stderr.strip()]  # one line: no NumPy RuntimeWarning beside it
    assert p.stderr.startswith("error: training diverged: loss is nan at epoch 1")
    assert "no checkpoint was written" in p.stderr and not out.exists()


def test_divergence_after_a_good_epoch_names_it_and_the_command_that_continues(tmp_path):
    out = tmp_path / "d.h5"
    assert nnctl("train", SPECS / "iris_mlp.toml", "--out", out, "--epochs", "1", "-q").returncode == 0
    p = nnctl("train", SPECS / "iris_mlp.toml", "--resume", out, *DIVERGE, "--epochs", "3", "-q")
    assert p.returncode == 3
    line = p.stderr.strip()
    assert len(p.stderr.splitlines()) == 1 and "RuntimeWarning" not in p.stderr
    assert f"wrote {out} with epoch 1, the last good one" in line
    command = shlex.split(line.split("continue: ", 1)[1])
    assert command == ["nnctl", "train", str(SPECS / "iris_mlp.toml"), "--resume", str(out), *DIVERGE, "--epochs", "3"]
    assert Checkpoint(out).epoch == 1


@pytest.mark.skipif(not hasattr(signal, "SIGINT"), reason="POSIX signals")
def test_ctrl_c_prints_the_command_that_continues(tmp_path):
    out = tmp_path / "long.h5"
    returncode, err = signalled_after_first_epoch(out, signal.SIGINT)
    assert returncode == 130, err
    line = err.strip().splitlines()[-1]
    epoch = Checkpoint(out).epoch
    assert line.startswith(f"error: interrupted: wrote {out} with epoch {epoch}; continue: ")
    command = shlex.split(line.split("continue: ", 1)[1])
    assert command == ["nnctl", "train", str(SPECS / "digits_mlp.toml"), "--resume", str(out), *ENDLESS_ARGS]
    # the command continues from that epoch (one epoch more, here)
    command[command.index("--epochs") + 1] = str(epoch + 1)
    p = nnctl(*command[1:], "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.splitlines()[-1])["epochs_run"] == epoch + 1 and Checkpoint(out).epoch == epoch + 1
