"""``--resume`` refuses a training setup (optimizer, loss, batch size...) that differs from the checkpoint's
unless the change is asked for with ``--set``; ``--resume-weights-only`` fine-tunes from the checkpoint's
weights with a new optimizer, counting epochs from 0. The real command, in a subprocess."""

import subprocess
import sys

import h5py
import numpy as np
import pytest

from helpers import checkpoint_arrays


def nnctl(*args):
    p = subprocess.run([sys.executable, "-m", "nnctl", *map(str, args)], capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def one_error(code, err):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def write_spec(tmp, name="r", train='optimizer = "adam"'):
    path = tmp / f"{name}.toml"
    path.write_text(
        f'name = "r"\n[data]\ntrain = "{tmp / "d.npz"}"\n[[model.layers]]\ntype = "Dense"\nunits = 5\n'
        'activation = "relu"\n[[model.layers]]\ntype = "Dense"\nunits = 3\nactivation = "softmax"\n'
        f'[train]\nloss = "sparse_categorical_crossentropy"\nepochs = 1\n{train}\n'
        f'[output]\ncheckpoint = "{tmp / "r.h5"}"\n'
    )
    return path


@pytest.fixture
def trained(tmp_path):
    """A checkpoint trained one epoch with Adam (lr 0.001, batch 32) on 40 rows."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(40, 4)), y=rng.integers(0, 3, 40))
    code, _, err = nnctl("train", write_spec(tmp_path), "--quiet")
    assert code == 0, err
    return tmp_path, tmp_path / "r.h5"


def _spec_json(path):
    import json

    with h5py.File(path, "r") as f:
        return json.loads(f["spec"][()])


@pytest.mark.parametrize(
    "train, words",
    [
        ('optimizer = "sgd"', ["train.optimizer.type 'adam' -> 'sgd'"]),
        ('optimizer = { type = "adam", learning_rate = 0.01 }', ["train.optimizer.learning_rate 0.001 -> 0.01"]),
        ('optimizer = { type = "adam", beta_1 = 0.8 }', ["train.optimizer.beta_1 0.9 -> 0.8"]),
        ('optimizer = "adam"\nbatch_size = 8', ["train.batch_size 32 -> 8"]),
        ('optimizer = "adam"\nloss = "categorical_crossentropy"', ["train.loss.type"]),
    ],
    ids=["type", "learning-rate", "beta-1", "batch-size", "loss"],
)
def test_a_changed_setup_in_the_spec_file_is_refused(trained, train, words):
    tmp, ckpt = trained
    if "loss" in train:  # a second loss key: replace the first
        path = write_spec(tmp, "b", train.split("\n")[0])
        path.write_text(path.read_text().replace('"sparse_categorical_crossentropy"', '"categorical_crossentropy"'))
    else:
        path = write_spec(tmp, "b", train)
    before = ckpt.read_bytes()
    line = one_error(*nnctl("train", path, "--resume", ckpt, "--epochs", "2", "--quiet")[::2])
    for w in words:
        assert w in line, (w, line)
    assert f"--resume {ckpt}" in line and "--resume-weights-only" in line and "--set" in line
    assert ckpt.read_bytes() == before


def test_the_same_setup_written_another_way_resumes(trained):
    tmp, ckpt = trained
    spelled = write_spec(tmp, "b", 'optimizer = { type = "Adam", learning_rate = 0.001, beta_2 = 0.999 }')
    code, _, err = nnctl("train", spelled, "--resume", ckpt, "--epochs", "2", "--quiet")
    assert code == 0, err
    with h5py.File(ckpt, "r") as f:
        assert len(f["history/loss"]) == 2


def test_a_change_asked_for_with_set_resumes(trained):
    tmp, ckpt = trained
    code, _, err = nnctl(
        "train",
        write_spec(tmp),
        "--resume",
        ckpt,
        "--epochs",
        "2",
        "--quiet",
        "--set",
        "train.optimizer.learning_rate=0.01",
    )
    assert code == 0, err
    assert _spec_json(ckpt)["train"]["optimizer"]["learning_rate"] == 0.01
    assert "_set" not in _spec_json(ckpt)
    with h5py.File(ckpt, "r") as f:
        assert len(f["history/loss"]) == 2 and f["optimizer"].attrs["iterations"] == 4  # 2 epochs x ceil(40 / 32)


def test_another_optimizer_type_asked_for_with_set_resumes_but_not_a_part_of_it(trained):
    tmp, ckpt = trained
    line = one_error(
        *nnctl(
            "train",
            write_spec(tmp, "b", 'optimizer = "sgd"'),
            "--resume",
            ckpt,
            "--epochs",
            "2",
            "--quiet",
            "--set",
            "train.optimizer.learning_rate=0.01",
        )[::2]
    )
    assert "train.optimizer.type 'adam' -> 'sgd'" in line  # the type came from the file, not from --set
    code, _, err = nnctl(
        "train", write_spec(tmp), "--resume", ckpt, "--epochs", "2", "--quiet", "--set", "train.optimizer=sgd"
    )
    assert code == 0, err
    assert _spec_json(ckpt)["train"]["optimizer"] in ("sgd", {"type": "sgd"})


def test_resume_weights_only_fine_tunes_from_the_weights(trained):
    tmp, ckpt = trained
    before = checkpoint_arrays(ckpt, ("weights",))
    # plain SGD with a learning rate of 1e-12: the weights after 2 epochs are the checkpoint's to ~1e-12,
    # while a fresh start would draw new ones
    spec = write_spec(tmp, "ft", 'optimizer = { type = "sgd", learning_rate = 1e-12 }')
    code, _, err = nnctl("train", spec, "--resume", ckpt, "--resume-weights-only", "--epochs", "2")
    assert code == 0, err
    assert "--resume-weights-only: weights of" in err and "epoch 1" in err
    after = checkpoint_arrays(ckpt, ("weights",))
    assert before.keys() == after.keys()
    for k in before:
        np.testing.assert_allclose(after[k], before[k], rtol=0, atol=1e-9)
    with h5py.File(ckpt, "r") as f:
        assert len(f["history/loss"]) == 2  # epochs counted from 0: two, not 1 + 2
        assert "optimizer/slots/m" not in f  # SGD keeps no slot; Adam's were not carried over
    assert _spec_json(ckpt)["train"]["optimizer"]["type"] == "sgd"
    code, _, err = nnctl("train", "--resume", ckpt, "--epochs", "3", "--quiet")  # and it resumes as an SGD run
    assert code == 0, err


def test_resume_weights_only_still_refuses_another_model(trained):
    tmp, ckpt = trained
    spec = write_spec(tmp, "w")
    spec.write_text(spec.read_text().replace("units = 5", "units = 6"))
    line = one_error(*nnctl("train", spec, "--resume", ckpt, "--resume-weights-only", "--quiet", "--force")[::2])
    assert "model differs" in line and "units 5 -> 6" in line


def test_resume_weights_only_needs_resume(trained):
    tmp, _ = trained
    code, _, err = nnctl("train", write_spec(tmp), "--resume-weights-only")
    assert code == 2 and "--resume-weights-only needs --resume" in err and "Traceback" not in err


def test_setup_differences_by_hand():
    from nnctl.resume import refused_changes, setup_differences

    stored = {
        "train": {
            "optimizer": {"type": "sgd", "learning_rate": 0.1, "momentum": 0.9},
            "loss": "mse",
            "batch_size": 32,
            "shuffle": True,
        }
    }
    same = {
        "train": {
            "optimizer": {"type": "SGD", "momentum": 0.9, "learning_rate": 0.1, "nesterov": False},
            "loss": "mean_squared_error",
            "batch_size": 32,
            "shuffle": True,
        }
    }
    assert setup_differences(same, stored) == {}
    changed = {
        "train": {"optimizer": {"type": "sgd", "learning_rate": 0.1}, "loss": "mae", "batch_size": 32, "shuffle": False}
    }
    diff = setup_differences(changed, stored)
    assert diff == {
        "train.optimizer.momentum": "0.9 -> 0.0",
        "train.loss.type": "'mean_squared_error' -> 'mean_absolute_error'",
        "train.shuffle": "True -> False",
    }
    assert refused_changes(diff, ["train.optimizer", "train.shuffle"]) == {"train.loss.type": diff["train.loss.type"]}
    assert setup_differences({"train": {"optimizer": "adam"}}, {"train": {}}) == {}  # an older checkpoint
