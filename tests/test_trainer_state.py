"""nnctl/trainer_state.py: a snapshot is host data only (a checkpoint can be written from it on a GPU run), and
restore writes into the model's arrays in place, so the layers' flat-buffer views and the optimizer see it.
tests/test_session.py checks that a restored mid-epoch stop continues bit-identically."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import load_spec, trainer_for
from nnctl import backend
from nnctl.train import Hooks


def _host_only(value, where="snapshot") -> None:
    """Every array in a snapshot is a NumPy array (no device array, which h5py could not write)."""
    if isinstance(value, dict):
        for k, v in value.items():
            _host_only(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _host_only(v, f"{where}[{i}]")
    else:
        assert type(value).__module__.split(".")[0] not in ("cupy",), f"{where} is a device array"


@pytest.mark.parametrize("device", ["cpu", "gpu"])
def test_a_mid_epoch_snapshot_is_host_data_and_restores_in_place(tmp_path, request, device):
    if device == "gpu":
        request.getfixturevalue("emulated_gpu")
    backend.use(device)
    spec = load_spec("iris_mlp.toml", tmp_path, "train.epochs=2")
    calls: list = []
    stopped, ds = trainer_for(spec, Hooks(should_stop=lambda: calls.append(1) or len(calls) == 9))
    stopped.fit(ds.x_train, ds.y_train, 2, ds.x_val, ds.y_val)
    assert stopped.progress is not None and stopped.progress.batch > 0  # stopped inside an epoch
    snap = stopped.snapshot()
    _host_only(snap)
    assert snap["position"]["batch"] == stopped.progress.batch and snap["epoch"] == stopped.state.epoch
    assert len(snap["position"]["losses"]) == stopped.progress.batch

    fresh, _ = trainer_for(spec)
    views = {k: v for k, v in fresh.model.named_params().items()}
    fresh.restore(snap)
    # the same arrays, now holding the snapshot's values: the optimizer steps what the layers compute with
    assert all(fresh.model.named_params()[k] is v for k, v in views.items())
    np.testing.assert_array_equal(backend.to_numpy(fresh.model.flat_params), snap["flat_params"])
    for k, v in views.items():
        np.testing.assert_array_equal(backend.to_numpy(v).ravel(), snap["flat_params"][fresh.model.slices[k]])
    assert fresh.optimizer.iterations == stopped.optimizer.iterations
    assert fresh.progress.batch == stopped.progress.batch
    np.testing.assert_array_equal(fresh.progress.order, stopped.progress.order)
    again = fresh.snapshot()  # a restored trainer snapshots to the same state
    np.testing.assert_array_equal(again["flat_params"], snap["flat_params"])
    assert again["data_rng"] == snap["data_rng"] and again["layer_rngs"] == snap["layer_rngs"]
    np.testing.assert_array_equal(again["position"]["losses"], snap["position"]["losses"])
