"""Faults injected into real training runs (subprocesses): signals at the worst moments, SIGKILL mid-write,
unwritable and directory outputs, two runs on one checkpoint, the umask, a full disk."""

import os
import shutil
import signal
import stat
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from helpers import SPECS

IRIS_SPEC = SPECS / "iris_mlp.toml"
# the CLI with the final checkpoint write patched: signal argv[1] is sent to ourselves inside the write
# (or SIGKILL after it filled the temp file)
SIGNAL_IN_WRITE = """
import os, signal, sys
import nnctl.checkpoint as C
real, sig = C.atomic_write, getattr(signal, sys.argv[1])
def patched(path, write):
    def w(tmp):
        if sig != signal.SIGKILL:
            os.kill(os.getpid(), sig)
        write(tmp)
        if sig == signal.SIGKILL:
            os.kill(os.getpid(), sig)
    real(path, w)
C.atomic_write = patched
sys.argv = ["nnctl"] + sys.argv[2:]
from nnctl.cli.main import run
run()
"""


def nnctl(*args, timeout=120, **kw):
    return subprocess.run(
        [sys.executable, "-m", "nnctl", *map(str, args)], capture_output=True, text=True, timeout=timeout, **kw
    )


def epoch_of(path) -> int:
    with h5py.File(path, "r") as f:
        return int(f.attrs["epoch"])


def temps(folder) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.endswith(".tmp"))


@pytest.fixture
def slow_spec(tmp_path):
    """A spec whose first epoch takes many seconds (60k samples, batch size 1): a run is reliably inside it."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60_000, 8))
    rows = "\n".join(",".join(f"{v:.3f}" for v in r) + f",{int(r[0] > 0)}" for r in x)
    (tmp_path / "big.csv").write_text("a,b,c,d,e,f,g,h,y\n" + rows + "\n")
    path = tmp_path / "slow.toml"
    path.write_text(
        '[data]\ntrain = "big.csv"\n[[model.layers]]\ntype = "Dense"\nunits = 64\nactivation = "relu"\n'
        '[[model.layers]]\ntype = "Dense"\nunits = 2\nactivation = "softmax"\n'
        '[train]\nloss = "sparse_categorical_crossentropy"\nepochs = 50\nbatch_size = 1\n'
    )
    return path


def start_slow(spec, out, *extra):
    """Start a slow run on ``out``; return once it holds the checkpoint lock and has had time to load its data."""
    p = subprocess.Popen(
        [sys.executable, "-m", "nnctl", "train", str(spec), "--out", str(out), "--quiet", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lock = out.with_name(f".{out.name}.lock")
    for _ in range(600):
        if lock.exists() or p.poll() is not None:
            break
        time.sleep(0.05)
    assert p.poll() is None, p.communicate()
    time.sleep(3)  # data loading of 60k rows takes well under this; epoch 1 takes far longer
    return p


def test_ctrl_c_in_epoch_1_keeps_the_older_checkpoint(tmp_path, slow_spec):
    out = tmp_path / "run.h5"
    assert nnctl("train", IRIS_SPEC, "--epochs", "2", "--out", out, "--quiet").returncode == 0
    before = out.read_bytes()
    p = start_slow(slow_spec, out, "--force")  # another model: replaced only once it has finished an epoch
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "nothing written" in err and str(out) in err and "Traceback" not in err
    assert out.read_bytes() == before and epoch_of(out) == 2
    assert temps(tmp_path) == []


def test_concurrent_runs_on_one_checkpoint_second_refuses(tmp_path, slow_spec):
    out = tmp_path / "shared.h5"
    first = start_slow(slow_spec, out)
    try:
        second = nnctl("train", IRIS_SPEC, "--epochs", "1", "--out", out, "--quiet")
        assert second.returncode == 2
        assert second.stderr.strip() == (
            f"error: {out}: another nnctl run (pid {first.pid}) is writing this "
            f"checkpoint; wait for it to finish or choose another --out"
        )
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=60)
    assert not out.with_name(f".{out.name}.lock").exists()  # released (and removed) at the end
    assert nnctl("train", IRIS_SPEC, "--epochs", "1", "--out", out, "--quiet").returncode == 0


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_signal_during_final_write_still_saves(tmp_path, sig):
    out = tmp_path / "final.h5"
    p = subprocess.run(
        [
            sys.executable,
            "-c",
            SIGNAL_IN_WRITE,
            sig,
            "train",
            str(IRIS_SPEC),
            "--epochs",
            "2",
            "--out",
            str(out),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if sig == "SIGINT":  # honoured after the write: the run is saved and the run folder written, exit 130
        assert p.returncode == 130, p.stderr
        line = p.stderr.strip()
        assert line.startswith(f"error: interrupted: wrote {out} with epoch 2; continue: nnctl train ")
        assert f"--resume {out}" in line and "\n" not in line
        assert (tmp_path / "final.run" / "metrics.csv").exists()
    else:  # SIGTERM after the last batch: the run completes its write and ends well (nothing left to requeue)
        assert p.returncode == 0, p.stderr
    assert epoch_of(out) == 2 and "Exception ignored" not in p.stderr
    assert temps(tmp_path) == []


def test_sigkill_mid_write_leaves_a_temp_the_next_run_removes(tmp_path):
    out = tmp_path / "k.h5"
    p = subprocess.run(
        [
            sys.executable,
            "-c",
            SIGNAL_IN_WRITE,
            "SIGKILL",
            "train",
            str(IRIS_SPEC),
            "--epochs",
            "1",
            "--out",
            str(out),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == -signal.SIGKILL
    left = temps(tmp_path)
    assert not out.exists() and len(left) == 1 and left[0].startswith(".k.h5.")
    assert (tmp_path / left[0]).stat().st_size > 0
    sleeper = subprocess.Popen(["sleep", "60"])  # a temp of a live process is left alone
    live = tmp_path / f".k.h5.{sleeper.pid}.tmp"
    live.write_bytes(b"in progress")
    try:
        assert nnctl("train", IRIS_SPEC, "--epochs", "1", "--out", out, "--quiet").returncode == 0
        assert temps(tmp_path) == [live.name] and epoch_of(out) == 1
        assert not (tmp_path / ".k.h5.lock").exists()  # the dead run's lock file was taken over and removed
    finally:
        sleeper.kill()
        sleeper.wait()


def _missing_data_spec(tmp_path):
    """A spec whose data file does not exist: an output error, not this one, proves outputs are checked first."""
    path = tmp_path / "nodata.toml"
    path.write_text(
        '[data]\ntrain = "missing.csv"\n[[model.layers]]\ntype = "Dense"\nunits = 2\n'
        'activation = "softmax"\n[train]\nloss = "sparse_categorical_crossentropy"\nepochs = 1\n'
    )
    return path


def test_directory_out_fails_before_training(tmp_path):
    (tmp_path / "adir").mkdir()
    p = nnctl("train", _missing_data_spec(tmp_path), "--out", tmp_path / "adir")
    assert p.returncode == 2
    assert p.stderr.strip() == f"error: {tmp_path / 'adir'}: checkpoint path is a folder; expected a file path"


@pytest.fixture
def unwritable_folder(tmp_path):
    """A folder no one can create files in: immutable when running as root (chmod does not stop root), else 0555."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
            pytest.skip("running as root and chattr +i is not permitted, so no folder is unwritable")
        undo = ["chattr", "-i", str(folder)]
    else:
        folder.chmod(0o555)
        undo = ["chmod", "755", str(folder)]
    yield folder
    subprocess.run(undo, check=True)


@pytest.mark.parametrize("option", ["--out", "--run-dir"])
def test_unwritable_output_fails_before_training(tmp_path, unwritable_folder, option):
    target = unwritable_folder / ("x.h5" if option == "--out" else "run")
    other = ["--run-dir", tmp_path / "r"] if option == "--out" else ["--out", tmp_path / "x.h5"]
    p = nnctl("train", _missing_data_spec(tmp_path), option, target, *other)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {unwritable_folder}: cannot create the ")
    assert "missing.csv" not in p.stderr


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600)])
def test_files_follow_the_umask(tmp_path, umask, mode):
    out = tmp_path / "m.h5"
    p = nnctl("train", IRIS_SPEC, "--epochs", "1", "--out", out, "--quiet", preexec_fn=lambda: os.umask(umask))
    assert p.returncode == 0, p.stderr
    assert stat.S_IMODE(out.stat().st_mode) == mode
    for f in (tmp_path / "m.run").iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == mode, f


@pytest.mark.parametrize("guarded", [True, False], ids=["free-space-check", "write-fails"])
def test_full_disk_one_line_old_file_kept(tmp_path, guarded):
    """A 2 MiB tmpfs in a user namespace, filled up: one line, the old file intact. The free-space check refuses
    before training; with it disabled, the final write fails and the old file is still intact."""
    if (
        shutil.which("unshare") is None
        or subprocess.run(
            ["unshare", "-rm", "mount", "-t", "tmpfs", "-o", "size=2m", "none", str(tmp_path)], capture_output=True
        ).returncode
        != 0
    ):
        pytest.skip("unshare/mount of a tmpfs is not permitted here")
    old = tmp_path / "old.h5"
    assert nnctl("train", IRIS_SPEC, "--epochs", "1", "--out", old, "--quiet").returncode == 0
    disk = tmp_path / "disk"
    disk.mkdir()
    cli = (
        f"{sys.executable} -m nnctl"
        if guarded
        else f"{sys.executable} -c 'import sys, nnctl.guards as g; g.check_free_space = lambda *a: None; "
        f'sys.argv[0] = "nnctl"; from nnctl.cli.main import run; run()\''
    )
    script = (
        f"mount -t tmpfs -o size=2m none {disk} && cp {old} {disk}/c.h5 && "
        f"(head -c 4M /dev/zero > {disk}/fill 2>/dev/null; true) && "
        f"{cli} train {IRIS_SPEC} --epochs 2 --out {disk}/c.h5 --run-dir {tmp_path}/r --quiet; "
        f'echo "rc=$?"; cmp {old} {disk}/c.h5 && echo same; ls -a {disk}'
    )
    p = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=120)
    assert "rc=2" in p.stdout, p.stdout + p.stderr
    if guarded:  # refused before training (nnctl/guards.py), which counts twice the checkpoint's size
        assert p.stderr.strip().startswith(
            f"error: {disk}: checkpoint folder has 0.0 MiB free; the checkpoint needs about "
        ), p.stderr
    else:
        assert p.stderr.strip() == (
            f"error: {disk}/c.h5: cannot write (no space left on device); the previous file is unchanged"
        )
    assert "same" in p.stdout and ".tmp" not in p.stdout
