"""nnctl/backend.py: host <-> device round trips and their dtypes, scatter_add, and the rule that CuPy is the
backend's alone and imported only when a GPU is asked for. The device side runs on the CuPy emulator
(tests/cupy_emulator), which refuses implicit host transfers as CuPy does; tests/test_gpu.py covers device
selection and CPU/GPU training parity."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from nnctl import backend

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "nnctl"
DTYPES = ["float32", "float64", "int32", "int64", "bool", "uint8"]


def _host(dtype: str) -> np.ndarray:
    return (np.arange(24).reshape(2, 3, 4) % 5).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cpu_round_trip_keeps_values_and_dtype_without_copies(dtype):
    backend.use("cpu")
    a = _host(dtype)
    d = backend.asarray(a)
    assert backend.xp is np and d.dtype == a.dtype
    back = backend.to_numpy(d)
    assert isinstance(back, np.ndarray) and back.dtype == a.dtype
    np.testing.assert_array_equal(back, a)
    assert np.shares_memory(back, a)  # on the CPU the host array is the device array


@pytest.mark.parametrize("dtype", DTYPES)
def test_device_round_trip_keeps_values_and_dtype(emulated_gpu, dtype):
    backend.use("gpu")
    a = _host(dtype)
    d = backend.asarray(a)
    assert isinstance(d, emulated_gpu.ndarray) and not isinstance(d, np.ndarray)
    assert d.dtype == a.dtype and d.shape == a.shape
    back = backend.to_numpy(d)
    assert type(back) is np.ndarray and back.dtype == a.dtype
    np.testing.assert_array_equal(back, a)
    back[0, 0, 0] = 9  # a copy: the host array does not alias device memory
    np.testing.assert_array_equal(backend.to_numpy(d), a)


@pytest.mark.parametrize("device", ["cpu", "gpu"])
@pytest.mark.parametrize(
    "host, dtype, want",
    [
        (np.arange(3, dtype=np.float64), "float32", np.float32),  # the model's dtype wins over the data's
        (np.arange(3, dtype=np.float32), "float64", np.float64),
        (np.array([1.7, -2.2]), "int64", np.int64),  # token ids: truncated toward zero as NumPy casts
        ([1, 2, 3], None, np.int64),  # a list takes NumPy's default dtype
        (0.5, "float32", np.float32),  # a scalar becomes a 0-d array
    ],
)
def test_asarray_casts_to_the_dtype_asked_for(request, device, host, dtype, want):
    if device == "gpu":
        request.getfixturevalue("emulated_gpu")
    backend.use(device)
    d = backend.asarray(host, dtype=dtype)
    assert d.dtype == want
    np.testing.assert_array_equal(backend.to_numpy(d), np.asarray(host).astype(want))


@pytest.mark.parametrize("device", ["cpu", "gpu"])
def test_scatter_add_accumulates_repeated_indices(request, device):
    if device == "gpu":
        request.getfixturevalue("emulated_gpu")
    backend.use(device)
    target = backend.asarray(np.zeros((4, 2)))
    idx = backend.asarray(np.array([1, 3, 1, 1, 0]))
    values = backend.asarray(np.arange(10.0).reshape(5, 2))
    backend.scatter_add(target, idx, values)
    # by hand: row 1 gets rows 0, 2 and 3 of values; row 3 row 1; row 0 row 4; row 2 nothing
    want = np.array([[8.0, 9.0], [0 + 4 + 6, 1 + 5 + 7], [0.0, 0.0], [2.0, 3.0]])
    np.testing.assert_array_equal(backend.to_numpy(target), want)


def test_synchronize_is_harmless_on_the_cpu():
    backend.use("cpu")
    backend.synchronize()


# -- CuPy belongs to the backend, and only when asked for ------------------------------------------------
def _module_level_imports(tree: ast.Module) -> set[str]:
    """Modules imported at the top level of a module (inside ``if``/``try`` too, not inside functions)."""
    found: set[str] = set()
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        stack.extend(ast.iter_child_nodes(node))
    return found


def test_the_module_level_import_reader_sees_guarded_imports_and_skips_functions():
    tree = ast.parse("try:\n    import cupy\nexcept ImportError:\n    pass\ndef f():\n    import cupyx\n")
    assert _module_level_imports(tree) == {"cupy"}


def test_no_module_imports_cupy_at_import_time():
    """tests/test_imports.py keeps CuPy out of every module but the backend; here the backend itself may only
    import it inside the functions that select or use a GPU, so a CPU run never loads CUDA."""
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        top = {
            m
            for m in _module_level_imports(ast.parse(path.read_text(encoding="utf-8")))
            if m.split(".")[0] in ("cupy", "cupyx")
        }
        if top:
            offenders[path.relative_to(PACKAGE.parent).as_posix()] = sorted(top)
    assert not offenders, f"CuPy imported at module level: {offenders}"


def test_a_cpu_forward_and_backward_never_imports_cupy(tmp_path):
    """In a fresh interpreter with the CuPy emulator on the path (so an import would succeed and be seen)."""
    code = """
import sys
import numpy as np
from nnctl import backend
from nnctl.build import build_model, check_layers
backend.use("cpu")
entries, _ = check_layers([{"type": "Conv1D", "filters": 2, "kernel_size": 2}, {"type": "LSTM", "units": 2},
                           {"type": "Dense", "units": 1}])
from nnctl.spec_model import Spec
spec = Spec.from_dict({"name": "t", "seed": 0, "dtype": "float32", "data": {"train": "t.csv"},
                       "model": {"layers": entries}, "train": {}, "output": {}})
model = build_model(spec, (5, 3), 0)
model.to_device()
y = model.forward(np.ones((2, 5, 3), np.float32), training=True)
model.backward(np.ones_like(y))
print(sorted(m for m in sys.modules if m.split(".")[0] in ("cupy", "cupyx")))
"""
    emulator = pathlib.Path(__file__).resolve().parent / "cupy_emulator"
    env = {"PYTHONPATH": f"{emulator}", "PATH": "/usr/bin:/bin", "NNCTL_DEVICE": ""}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
