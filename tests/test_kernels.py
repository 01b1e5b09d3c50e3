"""The compiled-kernel switch (nnctl.kernels): when kernels run, and that Numba is never imported before one does."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from nnctl import backend, kernels


def modules_after(code: str, **env: str) -> set[str]:
    """The top-level module names a fresh interpreter holds after running ``code``."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            f"{code}\nimport sys; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    )
    return set(out.stdout.split())


def test_the_cli_and_the_library_never_import_numba_on_their_own():
    assert "numba" not in modules_after("from nnctl.cli import main; import nnctl.build, nnctl.train, nnctl.kernels")


def test_help_does_not_import_numba():
    assert "numba" not in modules_after(
        "import sys; sys.argv = ['nnctl', '--help']\ntry:\n"
        "    from nnctl.cli.main import run; run()\nexcept SystemExit: pass"
    )


@pytest.mark.parametrize("value, on", [("0", False), ("off", False), ("OFF", False), ("1", True), ("", True)])
def test_the_environment_switch(value, on):
    code = "from nnctl import kernels; print('ACTIVE', kernels.active())"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "NNCTL_KERNELS": value},
    )
    assert f"ACTIVE {on}" in out.stdout


def test_kernels_off_restores_the_previous_setting():
    before = kernels.active()
    with kernels.kernels_off():
        assert not kernels.active()
        with kernels.kernels_off():
            assert not kernels.active()
        assert not kernels.active()
    assert kernels.active() == before
    previous = kernels.use_kernels(False)
    try:
        assert not kernels.active()
    finally:
        kernels.use_kernels(previous)


def test_kernels_never_run_on_the_gpu_backend(emulated_gpu):
    previous = kernels.use_kernels(True)
    try:
        backend.use("gpu")
        assert backend.xp is emulated_gpu and not kernels.active()
    finally:
        kernels.use_kernels(previous)


def test_the_probe_sees_an_import():  # the two tests above could not fail if modules_after missed imports
    assert "numba" in modules_after("import numba")


def test_load_imports_a_kernel_module_by_name():
    with pytest.raises(ModuleNotFoundError):
        kernels.load("no_such_kernel")


_COLD = """
import sys
from nnctl import kernels
print(kernels.wanted("a", 60, False, 100), kernels.wanted("b", 60, False, 100), kernels.wanted("a", 50, False, 100))
print(kernels.wanted("c", 1, True, 100), "numba" in sys.modules)
import numba
print(kernels.wanted("d", 1, False, 100))
kernels.use_kernels(False)
print(kernels.wanted("d", 1, True, 100))
"""


def test_wanted_counts_each_familys_inference_until_it_repays_numbas_load():
    out = subprocess.run([sys.executable, "-c", _COLD], capture_output=True, text=True, check=True).stdout.split()
    # a: 60 then 110 of 100 (its own count, b's 60 not added); training runs them at once, without importing
    # Numba itself; once Numba is loaded every call does; switched off none does
    assert out == ["False", "False", "True", "True", "False", "True", "False"]
