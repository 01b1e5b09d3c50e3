"""nnctl/checkpoint.py through save, Checkpoint and load_into: every stored part comes back as written, a write
that fails half way leaves the previous file byte for byte, and files from a newer nnctl (or none) are refused."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from helpers import layers_spec
from nnctl import backend as B
from nnctl import checkpoint
from nnctl.build import build_model, check_layers
from nnctl.checkpoint import FORMAT_VERSION, Checkpoint, load_into, save, store_anomaly
from nnctl.errors import CheckpointError

SPEC = {"name": "t", "seed": 4, "model": {"layers": [{"type": "Dense", "units": 2, "name": "d"}]}, "_x": [1, 2.5]}


def _parts(**over) -> dict:
    rng = np.random.default_rng(0)
    parts = {
        "spec": SPEC,
        "weights": {"d/kernel": rng.normal(size=(3, 2)), "d/bias": np.arange(2.0), "bn/gamma": np.ones(4, np.float32)},
        "state": {"bn/moving_mean": rng.normal(size=4).astype(np.float32)},
        "prep_arrays": {
            "mean": rng.normal(size=3),
            "classes": np.array(["cat", "dog", "émeu"]),
            "vocab_ids": np.arange(5, dtype=np.int64),
            "meta": '{"task": "categorical"}',
        },
        "history": {"loss": [0.9, 0.5, 0.25], "val_accuracy": [0.5, 0.75, 1.0]},
        "seed": 4,
        "epoch": 3,
        "best_epoch": 2,
        "optimizer": {
            "type": "adam",
            "iterations": 12,
            "config": {"learning_rate": 0.001, "beta_1": 0.9},
            "slots": {"m": {"d/kernel": np.full((3, 2), 0.5)}, "v": {"d/kernel": np.full((3, 2), 0.25)}},
        },
        "resume": {
            "weights": {"d/kernel": np.zeros((3, 2)), "d/bias": np.ones(2)},
            "state": {"bn/moving_mean": np.zeros(4, np.float32)},
            "info": {"epoch": 3, "rng": {"state": [1, 2]}, "early_stopping": None},
            "position": {"epoch/order": np.array([2, 0, 1]), "epoch/batch_losses": np.array([0.5, 0.25])},
        },
    }
    parts.update(over)
    return parts


def _equal_named(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for k in a:
        assert a[k].dtype == np.asarray(b[k]).dtype, k
        np.testing.assert_array_equal(a[k], b[k])


def test_every_stored_part_round_trips(tmp_path):
    path = tmp_path / "m.h5"
    parts = _parts()
    save(path, **parts)
    c = Checkpoint(path)
    assert c.spec == SPEC
    _equal_named(c.weights, parts["weights"])
    _equal_named(c.state, parts["state"])
    assert set(c.prep_arrays) == set(parts["prep_arrays"])
    np.testing.assert_array_equal(c.prep_arrays["mean"], parts["prep_arrays"]["mean"])
    assert c.prep_arrays["classes"].tolist() == ["cat", "dog", "émeu"]
    assert c.prep_arrays["vocab_ids"].dtype == np.int64 and c.prep_arrays["vocab_ids"].tolist() == [0, 1, 2, 3, 4]
    assert c.prep_arrays["meta"] == '{"task": "categorical"}'
    assert c.history == parts["history"]
    assert (c.attrs["seed"], c.epoch, c.best_epoch) == (4, 3, 2)
    assert c.attrs["format"] == "nnctl-checkpoint" and c.attrs["format_version"] == 1
    assert {k: c.optimizer[k] for k in ("type", "iterations", "config")} == {
        "type": "adam",
        "iterations": 12,
        "config": {"learning_rate": 0.001, "beta_1": 0.9},
    }
    assert set(c.optimizer["slots"]) == {"m", "v"}
    for slot in ("m", "v"):
        _equal_named(c.optimizer["slots"][slot], parts["optimizer"]["slots"][slot])
    assert c.resume["info"] == parts["resume"]["info"]
    for key in ("weights", "state", "position"):
        _equal_named(c.resume[key], parts["resume"][key])
    assert c.anomaly is None


def test_no_best_epoch_no_resume_and_an_anomaly_threshold_round_trip(tmp_path):
    path = tmp_path / "m.h5"
    save(path, **_parts(best_epoch=None, resume=None))
    c = Checkpoint(path)
    assert c.best_epoch is None and c.resume is None
    store_anomaly(path, {"quantile": 0.99, "threshold": 0.125, "rows": 40})
    c = Checkpoint(path)
    assert c.anomaly == {"quantile": 0.99, "threshold": 0.125, "rows": 40}
    _equal_named(c.weights, _parts()["weights"])  # the rest of the file survives the copy
    store_anomaly(path, {"quantile": 0.5, "threshold": 1.0, "rows": 40})  # replaces, not appends
    assert Checkpoint(path).anomaly["threshold"] == 1.0


def test_named_inputs_or_outputs_write_format_2_others_format_1():
    assert checkpoint.format_version({"model": {"layers": []}}) == 1
    assert checkpoint.format_version({"model": {"inputs": {"a": {"shape": [1]}}}}) == 2
    assert checkpoint.format_version({"model": {"outputs": {"y": {"layer": "d"}}}}) == 2


class _FailsWhenWritten:
    """An array-like value that raises when h5py converts it, after the datasets before it were written."""

    def __array__(self, *args, **kwargs):
        raise RuntimeError("disk gone mid-write")


def test_a_write_failing_half_way_leaves_the_old_file_byte_identical(tmp_path):
    path = tmp_path / "m.h5"
    save(path, **_parts())
    before = path.read_bytes()
    weights = {**_parts()["weights"], "zz/late": _FailsWhenWritten()}  # the weights group is half written
    with pytest.raises(RuntimeError, match="disk gone"):
        save(path, **_parts(weights=weights, epoch=9))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.h5"]  # no temporary left beside it
    assert Checkpoint(path).epoch == 3


def test_a_failed_first_write_leaves_nothing(tmp_path):
    path = tmp_path / "new.h5"
    with pytest.raises(RuntimeError):
        save(path, **_parts(weights={"a/b": _FailsWhenWritten()}))
    assert list(tmp_path.iterdir()) == []


def _set_attr(path, **attrs):
    with h5py.File(path, "r+") as f:
        f.attrs.update(attrs)


def test_a_checkpoint_from_a_newer_nnctl_is_refused_with_the_versions(tmp_path):
    path = tmp_path / "m.h5"
    save(path, **_parts())
    _set_attr(path, format_version=FORMAT_VERSION + 1)
    with pytest.raises(CheckpointError) as err:
        Checkpoint(path)
    assert f"checkpoint format {FORMAT_VERSION + 1} is newer than this nnctl reads ({FORMAT_VERSION})" in str(err.value)
    _set_attr(path, format_version=FORMAT_VERSION)  # the newest it knows is read
    assert Checkpoint(path).epoch == 3


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda p: _set_attr(p, format="keras"),
            "not an nnctl checkpoint (expected attribute format='nnctl-checkpoint'",
        ),
        (lambda p: p.write_bytes(p.read_bytes()[:2000]), "unreadable or truncated checkpoint"),
        (lambda p: p.unlink(), "checkpoint not found"),
    ],
    ids=["foreign", "truncated", "missing"],
)
def test_what_is_not_a_checkpoint_is_refused(tmp_path, make, message):
    path = tmp_path / "m.h5"
    save(path, **_parts())
    make(path)
    with pytest.raises(CheckpointError, match=None) as err:
        Checkpoint(path)
    assert message in str(err.value)


def test_a_missing_part_is_named(tmp_path):
    path = tmp_path / "m.h5"
    save(path, **_parts())
    with h5py.File(path, "r+") as f:
        del f["history"]
    with pytest.raises(CheckpointError, match="/history: missing"):
        Checkpoint(path)


def _model():
    entries, _ = check_layers(
        [{"type": "Dense", "units": 2, "name": "d"}, {"type": "BatchNormalization", "name": "bn"}]
    )
    model = build_model(layers_spec(entries), (3,), 0)
    model.to_device()
    return model


def test_load_into_copies_every_array_into_the_model_in_its_dtype(tmp_path):
    model = _model()
    rng = np.random.default_rng(2)
    weights = {k: rng.normal(size=v.shape) for k, v in model.named_params().items()}  # float64 on disk
    state = {k: rng.normal(size=v.shape) for k, v in model.named_state().items()}
    save(tmp_path / "m.h5", **_parts(weights=weights, state=state))
    c = Checkpoint(tmp_path / "m.h5")
    loaded, skipped = load_into(model, c.weights, c.state, "m.h5")
    assert sorted(loaded) == sorted([*weights, *state]) and skipped == []
    for k, v in model.named_params().items():
        assert v.dtype == np.float32
        np.testing.assert_array_equal(B.to_numpy(v), weights[k].astype(np.float32))
    np.testing.assert_array_equal(
        B.to_numpy(model.named_state()["bn/moving_mean"]), state["bn/moving_mean"].astype(np.float32)
    )
    # the flat buffer the optimizer steps holds the loaded values (load_into writes into the views)
    assert np.array_equal(
        B.to_numpy(model.flat_params[model.slices["d/kernel"]]), weights["d/kernel"].astype(np.float32).ravel()
    )


def test_load_into_strict_names_the_missing_or_misshapen_array_non_strict_skips_it():
    model = _model()
    weights = {k: np.zeros(v.shape) for k, v in model.named_params().items()}
    state = {k: np.zeros(v.shape) for k, v in model.named_state().items()}
    missing = {k: v for k, v in weights.items() if k != "d/bias"}
    with pytest.raises(
        CheckpointError, match=r"m.h5: missing /weights/d/bias; the model expects an array of shape \[2\]"
    ):
        load_into(model, missing, state, "m.h5")
    wrong = {**weights, "d/kernel": np.zeros((4, 2))}
    with pytest.raises(CheckpointError, match=r"/weights/d/kernel has shape \[4, 2\], the model expects \[3, 2\]"):
        load_into(model, wrong, state, "m.h5")
    loaded, skipped = load_into(model, {**wrong, "extra/w": np.zeros(1)}, {}, "m.h5", strict=False)
    assert "d/kernel" not in loaded and "d/bias" in loaded
    assert "d/kernel (shape [4, 2] in the checkpoint, [3, 2] in the model)" in skipped
    assert "bn/moving_mean (not in the checkpoint)" in skipped
