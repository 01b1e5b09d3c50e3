"""Shared test helpers: shipped spec paths and training a spec into a temporary folder."""

import dataclasses
import json
import pathlib
import subprocess
import sys

import numpy as np

from nnctl import backend as B
from nnctl import run, spec

ROOT = pathlib.Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
# a run that only a signal ends: digits_mlp on 400 rows for 100,000 epochs (see signalled_after_first_epoch)
ENDLESS_ARGS = ("--set", "data.subset=400", "--epochs", "100000")


def signalled_after_first_epoch(out, signum) -> tuple[int, str]:
    """``nnctl train digits_mlp --out OUT`` sent ``signum`` once its first epoch is logged: (exit code, stderr)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "nnctl", "train", SPECS / "digits_mlp.toml", "--out", out, "--json", *ENDLESS_ARGS],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert json.loads(proc.stdout.readline())["event"] == "epoch"
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    return proc.returncode, err


def load_spec(name: str, tmp_path, *overrides: str) -> dict:
    """A shipped spec with its outputs redirected into tmp_path."""
    s = spec.load(SPECS / name, list(overrides))
    return outputs_at(s, str(tmp_path / (s.name + ".h5")), str(tmp_path / (s.name + ".run")))


def outputs_at(s, checkpoint: str, run_dir: str | None = None):
    """The spec ``s`` writing its checkpoint (and run folder) elsewhere: a changed copy, the spec is frozen."""
    changes = {"checkpoint": checkpoint} if run_dir is None else {"checkpoint": checkpoint, "run_dir": run_dir}
    return dataclasses.replace(s, output=dataclasses.replace(s.output, **changes))


def train_spec(name: str, tmp_path, *overrides: str, **kw) -> tuple[dict, dict]:
    s = load_spec(name, tmp_path, *overrides)
    return s, run.train(s, **kw)


def checkpoint_arrays(path, groups=("weights", "state", "optimizer/slots")) -> dict:
    """Every array under the checkpoint's ``groups`` (weights, state such as moving statistics, optimizer
    slots), keyed by its path in the file."""
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        for group in groups:
            f[group].visititems(
                lambda name, obj, g=group: (
                    out.__setitem__(f"{g}/{name}", obj[()]) if isinstance(obj, h5py.Dataset) else None
                )
            )
    return out


def dev(a, dtype=None):
    """Host data (array, nested list or scalar) on the active device, as nnctl receives it; None stays None."""
    return None if a is None else B.asarray(a, dtype=dtype)


def host(a):
    """Device results back as NumPy arrays (lists and tuples item by item); None stays None."""
    if a is None:
        return None
    if isinstance(a, (list, tuple)):
        return type(a)(host(v) for v in a)
    return B.to_numpy(a)


def layers_spec(entries: list, dtype: str = "float32", source: str = "test.toml"):
    """A typed Spec holding only these layer entries and a dtype (what build_model reads); nothing validated."""
    from nnctl.spec_model import Spec

    stored = {"name": "t", "seed": 0, "dtype": dtype, "data": {"train": "t.csv"}, "model": {"layers": entries}}
    return Spec.from_dict({**stored, "train": {}, "output": {}}, source)


def trainer_for(spec, hooks=None):
    """(a Trainer for a validated spec's model on its loaded data, the dataset), as the training session makes one."""
    from nnctl.assemble import make_loss, make_optimizer, model_for_data
    from nnctl.data import load_dataset
    from nnctl.train import Trainer

    ds = load_dataset(spec)
    model = model_for_data(spec, ds)
    model.to_device()
    trainer = Trainer(
        model,
        make_loss(spec),
        make_optimizer(spec),
        spec.train,
        ds.prep.task,
        ds.prep.n_classes(model.output_shape[-1]),
        spec.seed,
        hooks=hooks,
    )
    return trainer, ds


def weights_after_steps(entries: list, xs, ys, classes: int = 3, before_step=None):
    """The flat weights of a model of these layer entries (sparse cross-entropy over ``classes``, Adam at
    1e-2, seed 0) after one training step per batch (xs[i], ys[i]); ``before_step(model)`` runs before each."""
    from nnctl import losses, optimizers
    from nnctl.build import build_model
    from nnctl.train import Trainer

    raw = {
        "name": "t",
        "seed": 0,
        "data": {"train": "synthetic"},
        "model": {"layers": [dict(e) for e in entries]},
        "train": {"loss": "sparse_categorical_crossentropy", "optimizer": "adam", "batch_size": len(xs[0])},
    }
    typed = spec.validate(raw, source="test")
    net = build_model(typed, xs[0].shape[1:], typed.seed)
    net.to_device()
    loss = losses.get("sparse_categorical_crossentropy")
    trainer = Trainer(net, loss, optimizers.get("adam", learning_rate=1e-2), typed.train, "sparse", classes, typed.seed)
    for xb, yb in zip(xs, ys):
        if before_step is not None:
            before_step(net)
        trainer.loss_and_grad(xb, yb)
        trainer.optimizer.step(net.flat_params, net.flat_grads, net.slices.values(), lr=1e-2)
    return net.flat_params.copy()


def recurrent_layer(type_name, shapes, dtype=np.float32, seed=0, **config):
    """A recurrent layer built alone (``nnctl.testing.build_layer``) with nonzero biases, on the active device."""
    from nnctl.layers import layer_class
    from nnctl.testing import build_layer

    layer = layer_class(type_name)(name="l", **config)
    rng = np.random.default_rng(seed)
    build_layer(layer, shapes, dtype=dtype, init_rng=rng, rng=np.random.default_rng(seed + 1))
    for k, v in layer.params.items():
        if k.endswith("bias"):
            v[...] = rng.normal(scale=0.5, size=v.shape)
    layer.params = {k: dev(v.astype(dtype)) for k, v in layer.params.items()}
    layer.init_grads()
    return layer
