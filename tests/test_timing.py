"""``nnctl time`` and nnctl.timing: every layer reported with positive forward and backward times, the parts
nested inside the timed step, synthetic batches of the right form; structure only, never a time threshold."""

import json
import subprocess
import sys

import numpy as np
import pytest

from helpers import SPECS, layers_spec
from nnctl import backend as B
from nnctl.build import build_model
from nnctl.losses import get as get_loss
from nnctl.optimizers import get as get_optimizer
from nnctl.spec_sections import TrainSection
from nnctl.timing import profile, synthetic_batch, time_model
from nnctl.train import Trainer

CNN = """
name = "t"
[data]
train = "unused.csv"
[model]
input_shape = [8, 8, 1]
[[model.layers]]
type = "Conv2D"
filters = 2
kernel_size = 3
activation = "relu"
kernel_regularizer = { l2 = 0.01 }
[[model.layers]]
type = "Flatten"
[[model.layers]]
type = "Dropout"
rate = 0.2
[[model.layers]]
type = "Dense"
units = 3
activation = "softmax"
[train]
loss = "sparse_categorical_crossentropy"
batch_size = 8
"""


def nnctl(*args):
    return subprocess.run([sys.executable, "-m", "nnctl", *map(str, args)], capture_output=True, text=True)


def trainer_for(layers, shape, loss="mse", dtype="float64"):
    B.use("cpu")
    model = build_model(layers_spec([dict(e, name=f"l{i}") for i, e in enumerate(layers)], dtype), shape, 0)
    model.to_device()
    lo = get_loss(loss)
    return model, Trainer(model, lo, get_optimizer("sgd"), TrainSection(batch_size=4), lo.task, 3, 0)


def test_cli_json_reports_every_layer_and_nests_inside_the_step(tmp_path):
    spec = tmp_path / "t.toml"
    spec.write_text(CNN)
    r = nnctl("time", spec, "--batch", 5, "--iterations", 3, "--device", "cpu", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["batch"] == 5 and out["iterations"] == 3 and out["device"] == "cpu"
    assert [(x["name"], x["type"]) for x in out["layers"]] == [
        ("conv2d", "Conv2D"),
        ("flatten", "Flatten"),
        ("dropout", "Dropout"),
        ("dense", "Dense"),
    ]
    for layer in out["layers"]:
        assert layer["forward_ms"] > 0 and layer["backward_ms"] > 0
        assert layer["total_ms"] == pytest.approx(layer["forward_ms"] + layer["backward_ms"])
    assert out["loss_ms"] > 0 and out["optimizer_ms"] > 0 and out["regularization_ms"] > 0
    parts = (
        out["forward_ms"]
        + out["backward_ms"]
        + sum(out[k] for k in ("loss_ms", "optimizer_ms", "regularization_ms", "batch_ms"))
    )
    assert parts <= out["step_ms"] * (1 + 1e-9)  # every timed call runs inside the timed step
    assert out["step_ms"] == pytest.approx(parts + out["other_ms"])
    assert out["samples_per_second"] == pytest.approx(5 * 1000 / out["step_ms"])


def test_cli_table_names_every_layer_of_a_shipped_spec():
    r = nnctl("time", SPECS / "iris_mlp.toml", "--iterations", 2, "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "dense " in r.stdout and "dense_1" in r.stdout and "samples/s" in r.stdout and "(optimizer)" in r.stdout


def test_cli_bad_option_is_one_error_line():
    r = nnctl("time", SPECS / "iris_mlp.toml", "--iterations", 0)
    assert r.returncode == 2 and r.stderr.count("error:") == 1


def test_timers_are_removed_and_training_still_works():
    model, trainer = trainer_for([{"type": "Dense", "units": 3, "activation": "tanh"}], (4,))
    out = time_model(model, trainer, 6, 2, warmup=1)
    assert len(out["layers"]) == 1
    for obj in (model.nodes[0].layer, model.nodes[1].layer, trainer.loss, trainer.optimizer, model):
        assert not {"forward", "backward", "value_grad", "step", "regularization"} & set(vars(obj))
    x, y = synthetic_batch(model, "regression", 6)
    before = B.to_numpy(model.flat_params).copy()
    trainer.loss_and_grad(B.asarray(x), B.asarray(y))
    assert np.abs(B.to_numpy(model.flat_grads)).sum() > 0 and np.array_equal(before, B.to_numpy(model.flat_params))


def test_predict_mode_times_forward_only():
    model, trainer = trainer_for([{"type": "Dense", "units": 2}], (3,))
    x, y = synthetic_batch(model, "regression", 4)
    prof = profile(model, trainer, lambda i: (x, y), 2, warmup=0, predict=True).to_dict()
    assert prof["layers"][0]["forward_ms"] > 0 and prof["layers"][0]["backward_ms"] == 0
    assert "loss_ms" not in prof and "optimizer_ms" not in prof


def test_synthetic_targets_have_the_form_of_the_task():
    model, _ = trainer_for([{"type": "Dense", "units": 3}], (5,))
    x, y = synthetic_batch(model, "sparse", 50)
    assert x.shape == (50, 5) and y.dtype == np.int64 and y.shape == (50,) and 0 <= y.min() and y.max() < 3
    _, y = synthetic_batch(model, "categorical", 50)
    assert y.shape == (50, 3) and np.array_equal(y.sum(axis=1), np.ones(50)) and set(np.unique(y)) == {0.0, 1.0}
    _, y = synthetic_batch(model, "binary", 50)
    assert y.shape == (50, 3) and set(np.unique(y)) <= {0.0, 1.0}


def test_synthetic_token_ids_stay_inside_the_embedding():
    spec = layers_spec(
        [{"type": "Embedding", "input_dim": 7, "output_dim": 2, "name": "e"}, {"type": "Flatten", "name": "f"}]
    )
    model = build_model(spec, (9,), 0, input_dtype=np.int32)
    x, _ = synthetic_batch(model, "regression", 64)
    assert x.dtype == np.int32 and x.min() >= 0 and x.max() < 7


def test_gpu_path_synchronises_and_reports(tmp_path, emulated_gpu):
    from typer.testing import CliRunner

    from nnctl.cli.main import app

    spec = tmp_path / "t.toml"
    spec.write_text(CNN)
    r = CliRunner().invoke(app, ["time", str(spec), "--device", "gpu", "--iterations", "2", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["device"] == "gpu" and len(out["layers"]) == 4
    assert all(x["forward_ms"] > 0 and x["backward_ms"] > 0 for x in out["layers"])
