"""specs/transfer_digits.toml: a frozen feature extractor from digits_mlp plus a new head beats the same
network trained from scratch on the same 100 samples."""

import dataclasses

import h5py
import numpy as np

from helpers import load_spec, train_spec
from nnctl import run


def test_transfer_beats_training_from_scratch(tmp_path):
    base, _ = train_spec("digits_mlp.toml", tmp_path / "base")
    events = []
    transfer = load_spec("transfer_digits.toml", tmp_path / "transfer")
    transfer = dataclasses.replace(
        transfer, model=dataclasses.replace(transfer.model, init_from=base.output.checkpoint)
    )
    run.train(transfer, emit=events.append)
    loaded = next(e for e in events if e["event"] == "init_from")
    assert set(loaded["loaded"]) == {"dense/kernel", "dense/bias"}
    scratch = load_spec("transfer_digits.toml", tmp_path / "scratch", "model.layers[0].trainable=true")
    scratch = dataclasses.replace(scratch, model=dataclasses.replace(scratch.model, init_from=None))
    run.train(scratch)
    acc_transfer = run.evaluate(transfer.output.checkpoint)["accuracy"]
    acc_scratch = run.evaluate(scratch.output.checkpoint)["accuracy"]
    assert acc_transfer > acc_scratch + 0.02, (acc_transfer, acc_scratch)
    with h5py.File(base.output.checkpoint) as a, h5py.File(transfer.output.checkpoint) as b:
        np.testing.assert_array_equal(a["weights/dense/kernel"][()], b["weights/dense/kernel"][()])
