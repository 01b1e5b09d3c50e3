"""Training progress: a per-batch bar under a terminal, kept epoch lines, plain lines in a pipe, no device
reads per batch."""

import dataclasses
import fcntl
import io
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios

import numpy as np
import pytest

from helpers import SPECS, load_spec
from nnctl import run
from nnctl.cli.progress import Progress, kept_lines, plain_line
from nnctl.train import Hooks

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
EVENT = {
    "event": "epoch",
    "epoch": 3,
    "epochs": 10,
    "loss": 0.081234,
    "accuracy": 0.975123,
    "lr": 0.001,
    "seconds": 4.08,
    "samples_per_second": 14500.4,
    "val_loss": 0.07901,
    "val_accuracy": 0.97604,
}


def test_plain_line_is_rounded_for_people():
    assert plain_line(EVENT) == (
        "epoch 3/10  loss 0.0812  accuracy 0.9751  val_loss 0.0790  val_accuracy 0.9760  4.1 s  14,500 samples/s"
    )


@pytest.mark.parametrize("width", [80, 50])
def test_kept_lines_wrap_metrics_within_the_width(width):
    many = dict(
        EVENT,
        **{f"metric_{i}": 0.5 + i / 100 for i in range(8)},
        **{f"val_metric_{i}": 0.25 + i / 100 for i in range(8)},
    )
    lines = kept_lines(many, 469, width)
    assert all(len(line) <= width for line in lines)
    assert lines[0].startswith("epoch 3/10  469/469 ")
    text = " ".join(lines)
    for k, v in many.items():  # every metric is there whole, none is truncated
        if k not in ("event", "epoch", "epochs", "lr", "seconds", "samples_per_second"):
            assert f"{k} {v:.4f}" in text, k


def _train_under_pty(tmp_path, *args):
    """``nnctl train`` with stderr on an 80-column pseudo-terminal -> (exit code, raw stderr)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = dict(os.environ, COLUMNS="80", LINES="24", TERM="xterm", NNCTL_REFRESH_SECONDS="0")
    p = subprocess.Popen(
        [sys.executable, "-m", "nnctl", "train", *map(str, args)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=slave,
        env=env,
        cwd=tmp_path,
    )
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif p.poll() is not None:
            break
    p.wait(timeout=300)
    os.close(master)
    return p.returncode, b"".join(chunks).decode("utf-8", "replace")


def _screen_lines(raw: str) -> list[str]:
    """The lines left on screen: each newline-terminated line as its last carriage-return segment shows it."""
    lines = raw.replace("\r\n", "\n").split("\n")[:-1]
    return [ANSI.sub("", line.split("\r")[-1]) for line in lines]


def test_bar_moves_per_batch_and_every_epoch_line_is_kept(tmp_path):
    # iris: 96 training rows in batches of 16 -> 6 batches per epoch
    rc, raw = _train_under_pty(
        tmp_path, SPECS / "iris_mlp.toml", "--out", tmp_path / "m.h5", "--epochs", "3", "--set", "train.batch_size=16"
    )
    assert rc == 0, raw
    plain = ANSI.sub("", raw)
    for epoch in (1, 2, 3):
        counts = set(re.findall(rf"epoch {epoch}/3  (\d+)/6 ", plain))
        assert len(counts) >= 3, (epoch, counts)  # the bar advanced within the epoch
    screen = _screen_lines(raw)
    for epoch in (1, 2, 3):
        kept = [i for i, line in enumerate(screen) if line.startswith(f"epoch {epoch}/3  6/6 ")]
        assert len(kept) == 1, screen
        metrics = screen[kept[0] + 1]
        assert metrics.startswith("  loss ") and "accuracy" in metrics and "val_accuracy" in metrics, screen
    assert all(len(line) <= 80 for line in screen)


def test_a_pipe_gets_one_plain_line_per_epoch(tmp_path):
    p = subprocess.run(
        [sys.executable, "-m", "nnctl", "train", SPECS / "iris_mlp.toml", "--out", tmp_path / "m.h5", "--epochs", "3"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    epoch_lines = [line for line in p.stderr.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in epoch_lines] == ["1/3", "2/3", "3/3"]
    assert re.fullmatch(
        r"epoch 1/3  loss \d\.\d{4}  accuracy \d\.\d{4}  val_loss \d\.\d{4}  val_accuracy "
        r"\d\.\d{4}  \d+\.\d+ s  [\d,]+ samples/s",
        epoch_lines[0],
    ), epoch_lines[0]
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", p.stderr)  # no control characters but newlines


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_reads_the_device_a_fixed_number_of_times_per_epoch(tmp_path, emulated_gpu, monkeypatch):
    """With the bar on, host reads per epoch do not grow with the number of batches: the running loss is
    read when the bar refreshes (here: first and last batch only), never per batch."""
    monkeypatch.setenv("NNCTL_REFRESH_SECONDS", "3600")

    def reads_in_second_epoch(batch_size):
        s = load_spec(
            "digits_mlp.toml",
            tmp_path / str(batch_size),
            "train.epochs=2",
            f"train.batch_size={batch_size}",
            "data.subset=1438",
        )
        s = dataclasses.replace(
            s,
            data=dataclasses.replace(s.data, validation=None),
            train=dataclasses.replace(s.train, early_stopping=None),
        )
        counts = []
        with Progress(enabled=True, stream=_Terminal()) as progress:
            progress.set_epochs(2)
            run.train(
                s,
                device="gpu",
                hooks=Hooks(on_batch=progress.batch),
                emit=lambda e: counts.append(emulated_gpu.host_reads) if e.get("event") == "epoch" else None,
            )
        return counts[1] - counts[0]

    assert reads_in_second_epoch(719) == reads_in_second_epoch(44)  # 2 batches against 33


@pytest.mark.parametrize("flag", ["--json", "--quiet"])
def test_no_bar_on_a_terminal_with_json_or_quiet(tmp_path, flag):
    rc, raw = _train_under_pty(tmp_path, SPECS / "iris_mlp.toml", "--out", tmp_path / "m.h5", "--epochs", "2", flag)
    assert rc == 0, raw
    assert "\x1b" not in raw and "epoch 1/2" not in raw


# -- evaluate and predict ---------------------------------------------------------------------------------
def test_rows_bar_counts_rows_on_a_terminal_and_writes_nothing_elsewhere(monkeypatch):
    from nnctl.cli.progress import RowsBar

    monkeypatch.setenv("NNCTL_REFRESH_SECONDS", "0")
    term = _Terminal()
    with RowsBar("predict", enabled=True, stream=term) as bar:
        for done in (1024, 2048, 3000):
            bar.rows(done, 3000)
    shown = ANSI.sub("", term.getvalue())
    assert "predict  1,024/3,000" in shown and "predict  3,000/3,000" in shown
    pipe = io.StringIO()  # not a terminal: the results on stdout stand alone, stderr stays empty
    with RowsBar("predict", enabled=True, stream=pipe) as bar:
        bar.rows(3000, 3000)
    assert pipe.getvalue() == ""


def test_evaluate_and_predict_follow_their_rows(tmp_path):
    from nnctl import inference

    s = load_spec("iris_mlp.toml", tmp_path, "train.epochs=1")
    ckpt = s.output.checkpoint
    run.train(s)
    seen: list[tuple[int, int]] = []
    result = inference.evaluate(ckpt, on_batch=lambda done, total: seen.append((done, total)))
    n = result["samples"]
    assert seen == [(n, n)]  # one pass: the per-class report reads the outputs of the loss and metrics pass
    restored = inference.restore(ckpt)
    rows: list[tuple[int, int]] = []
    x = np.random.default_rng(0).normal(size=(2500, 4))
    inference.predict(restored, x, on_batch=lambda done, total: rows.append((done, total)))
    assert rows == [(1024, 2500), (2048, 2500), (2500, 2500)]
