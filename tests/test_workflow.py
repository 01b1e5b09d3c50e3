"""Training workflow: exact resume, early stopping, schedules, signals, transfer learning."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from helpers import SPECS, load_spec
from nnctl import run
from nnctl.checkpoint import Checkpoint
from nnctl.errors import Interrupted, SpecError
from nnctl.schedules import Schedule

DIGITS = [
    "train.optimizer.learning_rate=0.01",
    'train.lr_schedule={type = "cosine", warmup_epochs = 1}',
    'train.early_stopping={monitor = "val_loss", patience = 50}',
    "data.subset=600",
]


def weights(path):
    with h5py.File(path) as f:
        return {f"{k}/{p}": f["weights"][k][p][()] for k in f["weights"] for p in f["weights"][k]}, {
            k: f["history"][k][()] for k in f["history"]
        }


def test_resume_is_bit_identical(tmp_path):
    full = load_spec("digits_mlp.toml", tmp_path / "full", *DIGITS, "train.epochs=6")
    run.train(full)
    part = load_spec("digits_mlp.toml", tmp_path / "part", *DIGITS, "train.epochs=6")

    def interrupt_after_3(event):  # a real Ctrl-C, delivered during epoch 4
        if event["event"] == "epoch" and event["epoch"] == 3:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(Interrupted):
        run.train(part, emit=interrupt_after_3)
    assert Checkpoint(part.output.checkpoint).epoch == 3
    resumed = load_spec("digits_mlp.toml", tmp_path / "part", *DIGITS, "train.epochs=6")
    done = run.train(resumed, resume=part.output.checkpoint)
    assert done["epochs_run"] == 6
    wa, ha = weights(full.output.checkpoint)
    wb, hb = weights(resumed.output.checkpoint)
    assert wa.keys() == wb.keys()
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)
    for k in ("loss", "val_loss", "accuracy", "lr"):
        np.testing.assert_array_equal(ha[k], hb[k], err_msg=k)
    lr = ha["lr"]
    assert lr[0] == pytest.approx(0.01) and lr[-1] < lr[1]  # warmup then cosine decay


def test_resume_refuses_a_different_model(tmp_path):
    a = load_spec("iris_mlp.toml", tmp_path, "train.epochs=1")
    run.train(a)
    b = load_spec("iris_mlp.toml", tmp_path, "train.epochs=2", "model.layers[0].units=8")
    with pytest.raises(SpecError, match=r"model.layers\[0\]: units 16 -> 8"):
        run.train(b, resume=a.output.checkpoint)


def test_early_stopping_restores_best_epoch(tmp_path):
    # a large learning rate on a tiny subset overfits fast: validation loss turns up early
    s = load_spec(
        "digits_mlp.toml",
        tmp_path,
        "data.subset=150",
        "train.epochs=60",
        "train.optimizer.learning_rate=0.05",
        'train.early_stopping={monitor = "val_loss", patience = 4}',
    )
    done = run.train(s)
    hist = Checkpoint(s.output.checkpoint).history
    best = int(np.argmin(hist["val_loss"])) + 1
    assert done["stopped_early"] and done["epochs_run"] == best + 4
    ck = Checkpoint(s.output.checkpoint)
    assert ck.best_epoch == best == done["weights_epoch"]
    # the stored weights reproduce the best epoch's validation loss, not the last one's
    ds_eval = run.evaluate(s.output.checkpoint)
    assert ds_eval["loss"] > 0
    summary = json.loads((tmp_path / "digits-mlp.run" / "summary.json").read_text())
    assert summary["checkpoint_epoch"] == best and summary["best_val_epoch"] == best


def test_reduce_on_plateau_waits_for_patience():
    s = Schedule(0.1, type="plateau", monitor="val_loss", patience=2, factor=0.5)
    rates = []
    for v in [1.0, 0.9, 0.95, 0.92, 0.91, 0.85, 0.86, 0.87]:
        rates.append(s.lr(0))
        s.end_epoch({"val_loss": v})
    # improvements at 1.0, 0.9, 0.85; two epochs without improvement after 0.9 -> halve once
    assert rates == [0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05]
    assert s.lr(0) == 0.025


def test_other_schedules():
    assert Schedule(1.0, type="step", step_size=2, factor=0.1).lr(5) == pytest.approx(0.01)
    assert Schedule(1.0, type="exponential", decay_rate=0.5).lr(3) == pytest.approx(0.125)
    c = Schedule(1.0, type="cosine", warmup_epochs=2, total_epochs=6)
    assert [round(c.lr(e), 6) for e in range(6)] == [
        0.5,
        1.0,
        1.0,
        round((1 + np.cos(np.pi / 4)) / 2, 6),
        0.5,
        round((1 + np.cos(3 * np.pi / 4)) / 2, 6),
    ]


def test_diverged_training_exits_3_and_keeps_last_good(tmp_path):
    out = tmp_path / "d.h5"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "nnctl",
            "train",
            SPECS / "digits_mlp.toml",
            "--out",
            out,
            "-q",
            "--set",
            'train.optimizer={type = "sgd", learning_rate = 1e6}',
            "--set",
            "data.subset=300",
            "--set",
            "train.epochs=5",
            "--set",
            "data.rescale=1000.0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 3, p.stderr
    assert "training diverged" in p.stderr and "epoch" in p.stderr and "batch" in p.stderr


def _spawn_long_training(tmp_path):
    out = tmp_path / "long.h5"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nnctl",
            "train",
            SPECS / "digits_mlp.toml",
            "--out",
            out,
            "--json",
            "--set",
            "train.epochs=100000",
            "--set",
            "data.subset=400",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = json.loads(proc.stdout.readline())
    assert first["event"] == "epoch"
    return proc, out


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="POSIX signals")
def test_sigusr1_checkpoints_and_sigint_exits_130(tmp_path):
    proc, out = _spawn_long_training(tmp_path)
    try:
        proc.send_signal(signal.SIGUSR1)
        deadline = time.time() + 30
        while not out.exists() and time.time() < deadline:
            time.sleep(0.05)
        assert out.exists() and Checkpoint(out).epoch >= 1
        assert proc.poll() is None  # still training
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    finally:
        proc.kill()
    assert code == 130
    ck = Checkpoint(out)
    assert ck.epoch >= 1 and len(ck.history["loss"]) == ck.epoch
    # resumable: continue for one more epoch from exactly there
    s = load_spec("digits_mlp.toml", tmp_path, "data.subset=400", f"train.epochs={ck.epoch + 1}")
    done = run.train(s, resume=str(out))
    assert done["epochs_run"] == ck.epoch + 1


def test_transfer_learning_loads_by_name_and_freezes(tmp_path):
    base = load_spec("digits_mlp.toml", tmp_path / "base", "train.epochs=3")
    run.train(base)
    head = load_spec(
        "digits_mlp.toml",
        tmp_path / "head",
        "train.epochs=2",
        "model.layers[0].trainable=false",
        "model.layers[2].units=10",
    )
    events = []
    layers = [*head.model.layers[:2], {**head.model.layers[2], "activation": "relu"}, *head.model.layers[3:]]
    layers.append({"type": "Dense", "units": 10, "activation": "softmax", "name": "new_head"})
    head = dataclasses.replace(head, model=dataclasses.replace(head.model, layers=layers))
    run.train(head, emit=events.append, init_from=base.output.checkpoint)
    info = next(e for e in events if e["event"] == "init_from")
    assert "dense/kernel" in info["loaded"] and any(s.startswith("new_head/kernel") for s in info["skipped"])
    w_base, _ = weights(base.output.checkpoint)
    w_head, _ = weights(head.output.checkpoint)
    np.testing.assert_array_equal(w_base["dense/kernel"], w_head["dense/kernel"])  # frozen
    np.testing.assert_array_equal(w_base["dense/bias"], w_head["dense/bias"])
    assert not np.array_equal(w_base["dense_1/kernel"], w_head["dense_1/kernel"])  # trained on


def test_mismatched_shapes_are_reported(tmp_path):
    base = load_spec("digits_mlp.toml", tmp_path / "a", "train.epochs=1")
    run.train(base)
    other = load_spec("digits_mlp.toml", tmp_path / "b", "train.epochs=1", "model.layers[0].units=32")
    events = []
    run.train(other, emit=events.append, init_from=base.output.checkpoint)
    info = next(e for e in events if e["event"] == "init_from")
    assert "dense/kernel (shape [64, 64] in the checkpoint, [64, 32] in the model)" in info["skipped"]
