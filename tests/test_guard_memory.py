"""A model too large for memory is refused from its shapes before anything is allocated: ``nnctl check`` and
``nnctl train`` exit 2 with one line giving the estimate and the memory available; ``--no-memory-check`` and
``train.memory_check = false`` override. The CLI cases run in a subprocess whose peak RSS is measured (tests/child_rss.py)."""

import subprocess
import sys

import numpy as np
import pytest
from child_rss import run_measured

MIB = 2**20
UNITS = 10**9  # Dense(512 -> 10^9): 2 TB of float32 parameters, far beyond any machine that runs these tests


def nnctl(*args, cwd=None):
    return run_measured(*args, cwd=cwd)


def one_error(code, err):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def _huge_check_spec(tmp, units=UNITS):
    path = tmp / "huge.toml"
    path.write_text(
        '[data]\ntrain = "unused.csv"\n[model]\ninput_shape = [512]\n[[model.layers]]\ntype = "Dense"\n'
        f'units = {units}\n[[model.layers]]\ntype = "Dense"\nunits = 10\nactivation = "softmax"\n'
        '[train]\nloss = "sparse_categorical_crossentropy"\nbatch_size = 32\n'
    )
    return path


def test_check_refuses_a_huge_dense_layer_without_allocating(tmp_path):
    code, _, err, rss_mb = nnctl("check", _huge_check_spec(tmp_path))
    line = one_error(code, err)
    # float32, Adam (2 slots): parameters, gradients and slots are (1 + 1 + 2) x P x 4 bytes; activations are
    # 32 samples x (10^9 + 10) outputs x 4 bytes
    params = 512 * UNITS + UNITS + UNITS * 10 + 10
    total = 4 * params * 4 + 32 * (UNITS + 10) * 4
    assert f"training needs about {total / MIB:,.0f} MiB" in line, line
    assert f"parameters {params * 4 / MIB:,.0f}" in line and "per batch of 32" in line, line
    assert "MiB of RAM available" in line or "MiB left under" in line, line
    assert "--no-memory-check" in line and "huge.toml" in line
    assert rss_mb < 400, rss_mb  # the 2 TB are never touched: the shapes alone were built


def test_train_refuses_before_allocating_and_writes_nothing(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(20, 4)), y=rng.integers(0, 3, 20))
    path = tmp_path / "t.toml"
    path.write_text(
        f'name = "t"\n[data]\ntrain = "{tmp_path / "d.npz"}"\n[[model.layers]]\ntype = "Dense"\n'
        f'units = {UNITS}\n[[model.layers]]\ntype = "Dense"\nunits = 3\nactivation = "softmax"\n'
        '[train]\nloss = "sparse_categorical_crossentropy"\nepochs = 1\noptimizer = "sgd"\n'
        f'[output]\ncheckpoint = "{tmp_path / "t.h5"}"\n'
    )
    # the host-RAM guard (a GPU run is measured against the GPU's free memory instead)
    code, _, err, rss_mb = nnctl("train", path, "--quiet", "--device", "cpu")
    line = one_error(code, err)
    params = 4 * UNITS + UNITS + UNITS * 3 + 3  # plain SGD keeps no slot
    assert f"training needs about {(2 * params * 4 + 32 * (UNITS + 3) * 4) / MIB:,.0f} MiB" in line, line
    assert "optimizer slots 0" in line
    assert rss_mb < 400, rss_mb
    assert not (tmp_path / "t.h5").exists()


def test_the_override_skips_the_estimate(tmp_path):
    """Under a 1.5 GiB address-space limit a 3.3 GiB estimate is refused; with --no-memory-check the model is
    built and fails to allocate instead (the plain out-of-memory line): the check was skipped."""
    import resource

    units = 400_000  # 512 x 400k float32 = 780 MiB of kernel; with Adam and activations about 3.3 GiB
    spec = _huge_check_spec(tmp_path, units)

    def run(*extra):
        limited = (
            "import resource, runpy, sys\nresource.setrlimit(resource.RLIMIT_AS, (1536 << 20, "
            "resource.RLIM_INFINITY))\nsys.argv[0] = 'nnctl'\nrunpy.run_module('nnctl', run_name='__main__')\n"
        )
        p = subprocess.run(
            [sys.executable, "-c", limited, "check", spec, *extra], capture_output=True, text=True, timeout=120
        )
        return p.returncode, p.stderr

    if resource.getrlimit(resource.RLIMIT_AS)[0] != resource.RLIM_INFINITY:
        pytest.skip("this process already runs under an address-space limit")
    code, err = run()
    line = one_error(code, err)
    assert ("left under RLIMIT_AS" in line or "of RAM available" in line) and "--no-memory-check" in line, line
    code, err = run("--no-memory-check")
    assert "training needs about" not in err
    assert code == 2 and "out of memory" in err and "Traceback" not in err, err


def test_memory_check_false_trains_a_model_the_estimate_refuses(tmp_path, monkeypatch):
    from nnctl import memory, run
    from nnctl import spec as spec_mod
    from nnctl.errors import SpecError

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(20, 4)), y=rng.integers(0, 3, 20))
    path = tmp_path / "s.toml"
    path.write_text(
        f'name = "s"\n[data]\ntrain = "{tmp_path / "d.npz"}"\n[[model.layers]]\ntype = "Dense"\n'
        'units = 5\n[[model.layers]]\ntype = "Dense"\nunits = 3\nactivation = "softmax"\n'
        '[train]\nloss = "sparse_categorical_crossentropy"\nepochs = 1\nbatch_size = "full"\n'
        f'[output]\ncheckpoint = "{tmp_path / "s.h5"}"\n'
    )
    # Dense(4 -> 5) + Dense(5 -> 3) = 43 float32 parameters, Adam: 43 x 4 x 4 bytes; a full batch of 20 rows
    # keeps 20 x (5 + 3) outputs
    need = 43 * 4 * 4 + 20 * 8 * 4
    monkeypatch.setattr(memory, "available_memory", lambda: (need - 1, "of RAM available"))
    with pytest.raises(SpecError, match="training needs about 0 MiB .* but this machine has 0 MiB"):
        run.train(spec_mod.load(path))
    assert not (tmp_path / "s.h5").exists()
    monkeypatch.setattr(memory, "available_memory", lambda: (need, "of RAM available"))
    assert run.train(spec_mod.load(path))["epochs_run"] == 1
    (tmp_path / "s.h5").unlink()
    monkeypatch.setattr(memory, "available_memory", lambda: (1, "of RAM available"))
    assert run.train(spec_mod.load(path, ["train.memory_check=false"]))["epochs_run"] == 1


def test_shape_only_build_matches_the_real_one_and_leaves_layers_intact():
    from helpers import SPECS
    from nnctl import memory
    from nnctl import spec as spec_mod
    from nnctl.build import build_model
    from nnctl.layers.base import Layer

    s = spec_mod.load(SPECS / "mnist_cnn.toml")
    shape = tuple(s.model.input_shape)
    dry = memory.estimate(s, shape)
    model = build_model(s, shape, s.seed)  # a real build afterwards: the patches are gone
    assert all(v.strides != (0,) * v.ndim for v in model.named_params().values() if v.size > 1)
    assert dry == memory.training_memory(model, s)
    assert Layer.add_param.__qualname__ == "Layer.add_param"
