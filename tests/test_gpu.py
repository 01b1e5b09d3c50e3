"""The GPU backend: device selection and its errors, `nnctl info`, CPU/GPU parity, no host reads per step.

Most tests run the GPU code path through the CuPy emulator (tests/cupy_emulator): NumPy arithmetic behind
CuPy's rules, so a run on it must equal the CPU run bit for bit and any implicit host transfer fails.
The ``real_gpu`` tests need CuPy with a device and skip without one; they check the same parity within
float32 tolerance, since cuBLAS sums in another order than OpenBLAS.
"""

import dataclasses
import json
import sys
import types

import numpy as np
import pytest
from typer.testing import CliRunner

from helpers import SPECS, checkpoint_arrays, load_spec
from nnctl import backend, kernels, run
from nnctl.cli.main import app
from nnctl.errors import BackendError

runner = CliRunner()


def _real_gpu() -> bool:
    if not backend._gpu_installed():
        return False
    import cupy

    return getattr(cupy, "__version__", "") != "emulated" and backend.gpu_status()[0]


real_gpu = pytest.mark.skipif(not _real_gpu(), reason="needs CuPy and a CUDA GPU (none here)")


def train_on(device: str, name: str, tmp_path, *overrides: str) -> dict[str, np.ndarray]:
    s = load_spec(name, tmp_path / device, *overrides)
    run.train(s, device=device)
    return checkpoint_arrays(s.output.checkpoint)


PARITY = [  # every layer family, the fused losses, BatchNorm, Dropout and augmentation on the device
    ("mnist_mlp.toml", "data.subset=600", "train.epochs=2"),
    ("mnist_cnn.toml", "data.subset=300", "train.epochs=1"),
    ("resnet_small.toml", "train.epochs=1"),
    ("sine_lstm.toml", "train.epochs=1"),
    ("text_gru.toml", "train.epochs=1"),
    ("text_transformer.toml", "train.epochs=1"),
    ("seq2seq_reverse.toml", "train.epochs=1"),
]


# -- selection and its errors --------------------------------------------------------------------------
def test_gpu_without_cupy_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy now raises ImportError
    r = runner.invoke(app, ["train", str(SPECS / "xor.toml"), "--device", "gpu", "-o", str(tmp_path / "x.h5")])
    assert r.exit_code == 2
    assert "--device gpu: no usable GPU: CuPy is not installed" in r.output and "nnctl[gpu]" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "x.h5").exists()


def test_gpu_without_a_driver_says_so(tmp_path, monkeypatch):
    def no_driver():
        raise RuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient")

    cupy = types.ModuleType("cupy")
    cupy.__version__ = "14.0.0"
    cupy.cuda = types.SimpleNamespace(
        runtime=types.SimpleNamespace(
            getDeviceCount=no_driver, runtimeGetVersion=lambda: 13000, driverGetVersion=lambda: 0
        )
    )
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setattr(backend, "_gpu_installed", lambda: True)
    monkeypatch.setenv("NNCTL_DEVICE", "gpu")
    r = runner.invoke(app, ["evaluate", str(tmp_path / "missing.h5")])
    assert r.exit_code == 2
    assert "NNCTL_DEVICE=gpu: no usable GPU: CuPy found no CUDA driver or device" in r.output
    info = json.loads(runner.invoke(app, ["info", "--json"]).stdout)
    assert info["cupy"] == "14.0.0" and info["cuda_runtime"] == "13.0" and info["cuda_driver"] is None
    assert info["gpus"] == []
    assert info["auto"] == "cpu" and "insufficient" in info["gpu_unavailable"]
    monkeypatch.setenv("NNCTL_DEVICE", "auto")
    assert backend.use("auto") == "cpu"  # auto falls back quietly


def test_unknown_device_names_its_source(monkeypatch):
    with pytest.raises(BackendError, match="--device 'tpu': expected auto, cpu or gpu"):
        backend.use("tpu")
    monkeypatch.setenv("NNCTL_DEVICE", "tpu")
    with pytest.raises(BackendError, match="NNCTL_DEVICE='tpu'"):
        backend.use("auto")


def test_info_shows_the_gpu(emulated_gpu):
    r = runner.invoke(app, ["info"])
    assert r.exit_code == 0
    assert "Emulated GPU (NumPy on the CPU), 16.0 GiB" in r.stdout
    out = json.loads(runner.invoke(app, ["info", "--json"]).stdout)
    assert out["auto"] == "gpu" and out["cupy"] == "emulated" and out["cuda_runtime"] == "12.9"
    assert out["gpus"] == [{"name": "Emulated GPU (NumPy on the CPU)", "memory_bytes": 16 * 2**30}]


# -- the GPU code path (emulated) ----------------------------------------------------------------------
@pytest.mark.parametrize("spec", PARITY, ids=[p[0].removesuffix(".toml") for p in PARITY])
def test_emulated_gpu_training_equals_cpu_bit_for_bit(tmp_path, emulated_gpu, spec):
    name, *overrides = spec
    with kernels.kernels_off():  # the GPU runs the xp code: compare it with the CPU's xp code (not the kernels)
        cpu = train_on("cpu", name, tmp_path, *overrides)
    gpu = train_on("gpu", name, tmp_path, *overrides)
    assert backend.device == "gpu" and backend.xp is emulated_gpu
    assert cpu.keys() == gpu.keys() and len(cpu) > 0
    for k in cpu:
        np.testing.assert_array_equal(gpu[k], cpu[k], err_msg=k)


def test_evaluate_and_predict_on_the_gpu_match_the_cpu(tmp_path, emulated_gpu):
    s = load_spec("iris_mlp.toml", tmp_path, "train.epochs=20")
    run.train(s, device="cpu")
    ckpt = s.output.checkpoint
    assert run.evaluate(ckpt, device="gpu") == run.evaluate(ckpt, device="cpu")
    x = np.random.default_rng(0).normal(size=(7, 4)).astype(np.float32)
    on_gpu = run.predict(run.restore(ckpt, "gpu"), x)
    on_cpu = run.predict(run.restore(ckpt, "cpu"), x)
    for a, b in zip(on_gpu, on_cpu):
        assert isinstance(a, np.ndarray)  # results come back to the host for printing
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "name, rows, copies_per_batch",
    [
        ("digits_mlp.toml", 1438, 3),  # inputs, targets and the Dropout mask (drawn on the host: CPU and GPU agree)
        ("text_transformer.toml", 800, 2),  # inputs and targets: padding masks and causal masks are made on the device
        ("text_gru.toml", 800, 2),  # a masked Bidirectional GRU
    ],
)
def test_training_reads_nothing_back_per_batch(tmp_path, emulated_gpu, name, rows, copies_per_batch):
    """Host reads per epoch do not grow with the number of batches (losses and metrics stay on the device
    until the epoch ends), and host-to-device copies grow by a fixed few per batch."""

    def per_epoch(batch_size):
        s = load_spec(
            name, tmp_path / str(batch_size), "train.epochs=2", f"train.batch_size={batch_size}", f"data.subset={rows}"
        )
        s = dataclasses.replace(
            s,
            data=dataclasses.replace(s.data, validation=None),
            train=dataclasses.replace(s.train, early_stopping=None),
        )
        counts = []
        run.train(
            s,
            device="gpu",
            emit=lambda e: (
                counts.append((emulated_gpu.host_reads, emulated_gpu.host_copies))
                if e.get("event") == "epoch"
                else None
            ),
        )
        (r0, c0), (r1, c1) = counts
        return r1 - r0, c1 - c0  # the second epoch: no start-up work

    big, small = rows // 2, rows // 32
    (reads_few, copies_few), (reads_many, copies_many) = per_epoch(big), per_epoch(small)
    batches_few, batches_many = -(-rows // big), -(-rows // small)
    assert reads_many == reads_few < 10, (
        f"host reads per epoch: {reads_many} with {batches_many} batches, {reads_few} with {batches_few}"
    )
    assert copies_many - copies_few == copies_per_batch * (batches_many - batches_few), (copies_few, copies_many)


# -- a real GPU ------------------------------------------------------------------------------------
@pytest.mark.gpu
@real_gpu
@pytest.mark.parametrize("name", ["mnist_mlp.toml", "mnist_cnn.toml"])
def test_gpu_matches_cpu_within_float32_tolerance(tmp_path, name):
    """Two epochs from the same seed on CPU and GPU: the same weights up to float32 rounding, which
    training amplifies a little (different summation orders in OpenBLAS and cuBLAS)."""
    cpu = train_on("cpu", name, tmp_path, "data.subset=2000", "train.epochs=2")
    gpu = train_on("gpu", name, tmp_path, "data.subset=2000", "train.epochs=2")
    for k in cpu:
        scale = max(float(np.abs(cpu[k]).max()), 1e-6)
        err = float(np.abs(gpu[k] - cpu[k]).max()) / scale
        assert err < 2e-3, f"{k}: max difference {err:.2e} of the largest value"
