"""An estimate of the memory a training run needs, from the built model's shapes (nothing is allocated).

With P parameters (T of them in the trainable buffer), S optimizer slots, itemsize b and batch size B:
parameters P*b, gradients T*b, optimizer slots S*T*b, activations B*b*(sum of every layer's output size per
sample), the outputs the backward pass keeps. Workspace of single operations (im2col buffers) is not counted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator

import numpy as np

from nnctl import backend as B
from nnctl import initializers
from nnctl.assemble import make_optimizer
from nnctl.build import build_model
from nnctl.errors import SpecError
from nnctl.layers.base import Layer
from nnctl.spec_model import Spec

MIB = 1 << 20


def _elements(shape) -> int:
    """Elements per sample of one output shape, or of a list of them (multi-output layers)."""
    if isinstance(shape, list):
        return sum(_elements(s) for s in shape)
    return int(np.prod(shape, dtype=np.int64))


def optimizer_slots(spec: Spec) -> int:
    """How many parameter-sized buffers the spec's optimizer keeps (Adam 2, SGD with momentum 1, EMA +1)."""
    opt = make_optimizer(spec)
    return len(opt.slot_names) + int(bool(getattr(opt, "use_ema", False)))


def training_memory(model, spec: Spec) -> dict:
    """Bytes and MiB of parameters, gradients, optimizer slots and activations per batch of
    ``train.batch_size`` (activations are None for ``batch_size = "full"``, whose size is the data's)."""
    b = np.dtype(model.dtype).itemsize
    trainable, frozen = model.param_count()
    flat = int(model.flat_params.size) if model.flat_params is not None else trainable
    slots = optimizer_slots(spec)
    batch = spec.train.batch_size
    per_sample = sum(_elements(e.node.output_shape) for e in model.entries())  # one output per entry
    parts = {
        "parameters": (trainable + frozen) * b,
        "gradients": flat * b,
        "optimizer_slots": slots * flat * b,
        "activations": None if batch == "full" else int(batch) * per_sample * b,
    }
    total = sum(v for v in parts.values() if v is not None)
    out: dict = {"batch_size": batch, "dtype": str(np.dtype(model.dtype)), "optimizer_slots_per_parameter": slots}
    for k, v in {**parts, "total": total}.items():
        out[f"{k}_bytes"] = v
        out[f"{k}_mib"] = None if v is None else v / MIB
    return out


# -- refusing a model too large for memory, before any parameter is allocated ------------------------------
def _no_storage(shape, dtype) -> np.ndarray:
    """A writable array of ``shape`` backed by one element (every stride 0): a parameter's shape, no memory."""
    shape = (int(shape),) if np.ndim(shape) == 0 else tuple(int(s) for s in shape)
    return np.lib.stride_tricks.as_strided(np.zeros(1, dtype=dtype), shape, (0,) * len(shape), writeable=True)


@contextlib.contextmanager
def shapes_only() -> Iterator[None]:
    """While active, initializers and ``Layer.add_param``/``add_state`` keep shapes without storage, so
    ``Model.build`` infers every shape of a model of any size in microseconds and bytes."""
    saved = initializers.initialize, Layer.add_param, Layer.add_state

    def add(self, name: str, value) -> None:
        self.params[name] = _no_storage(np.shape(value), self.dtype)

    def add_state(self, name: str, value) -> None:
        self.state[name] = _no_storage(np.shape(value), self.dtype)

    initializers.initialize = lambda spec, shape, rng: _no_storage(shape, np.float64)
    Layer.add_param, Layer.add_state = add, add_state  # type: ignore[method-assign]
    try:
        yield
    finally:
        initializers.initialize, Layer.add_param, Layer.add_state = saved  # type: ignore[method-assign]


def estimate(spec: Spec, input_shape, defaults: dict | None = None, input_dtype=None) -> dict | None:
    """``training_memory`` of the spec's model for ``input_shape``, from a build without storage; None when
    that build fails (the real build then reports the spec's mistake in its own words)."""
    try:
        with shapes_only():
            model = build_model(spec, tuple(input_shape), spec.seed, defaults, input_dtype=input_dtype)
        return training_memory(model, spec)
    except Exception:  # noqa: BLE001 - any failure here is the real build's to report
        return None


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_available() -> int | None:
    """Room left under a cgroup v2 memory limit (containers), or None without one."""
    try:
        limit = open("/sys/fs/cgroup/memory.max", encoding="ascii").read().strip()
        used = int(open("/sys/fs/cgroup/memory.current", encoding="ascii").read())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(0, int(limit) - used)


def _address_space_available() -> int | None:
    """Room left under this process's RLIMIT_AS (ulimit -v), or None without one."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft == resource.RLIM_INFINITY:
            return None
        with open("/proc/self/statm", encoding="ascii") as f:
            used = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        return max(0, soft - used)
    except (ImportError, OSError, ValueError):
        return None


def available_memory() -> tuple[int | None, str]:
    """(bytes free for this run, where they were measured): the active GPU's free memory, else the
    smallest of the host's MemAvailable, a cgroup limit and RLIMIT_AS."""
    if B.device == "gpu":
        try:
            free, _ = B.xp.cuda.runtime.memGetInfo()
            pool = B.xp.get_default_memory_pool()
            return int(free) + int(pool.free_bytes()), "free on the GPU"
        except Exception:  # noqa: BLE001 - a CUDA error: no figure, no refusal
            return None, "GPU"
    found = [
        (v, w)
        for v, w in (
            (_meminfo_available(), "of RAM available"),
            (_cgroup_available(), "left under the cgroup memory limit"),
            (_address_space_available(), "left under RLIMIT_AS (ulimit -v)"),
        )
        if v is not None
    ]
    if not found:
        return None, "of RAM"
    return min(found)


def check_fits_for_data(spec: Spec, ds) -> dict | None:
    """``check_fits`` for the model ``assemble.model_for_data`` is about to build on dataset ``ds`` (a
    ``batch_size = "full"`` batch is the training set); skipped under ``train.memory_check = false``."""
    if not spec.train.memory_check or isinstance(ds.x_train, dict):
        return None  # (named inputs: the shapes-only estimate does not cover several inputs yet)
    shape = tuple(ds.input_shape)
    if spec.model.input_shape not in (None, list(shape)):
        return None  # model_for_data refuses the mismatch in its own words
    kind = np.dtype(ds.x_train.dtype).kind
    if spec.train.batch_size == "full":
        spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, batch_size=len(ds.x_train)))
    return check_fits(spec, shape, ds.defaults, ds.x_train.dtype if kind in "iu" else spec.dtype)


def check_fits(
    spec: Spec,
    input_shape,
    defaults: dict | None = None,
    input_dtype=None,
    flag: str = "--no-memory-check",
    available: tuple[int | None, str] | None = None,
) -> dict | None:
    """Refuse, before any allocation, a model whose training memory estimate exceeds the memory available
    (``flag`` names the override in the message); returns the estimate (None when it cannot be made)."""
    est = estimate(spec, input_shape, defaults, input_dtype)
    if est is None:
        return None
    free, where = available if available is not None else available_memory()
    if free is not None and est["total_bytes"] > free:
        act = est["activations_bytes"]
        parts = (
            f"parameters {est['parameters_mib']:,.0f}, gradients {est['gradients_mib']:,.0f}, optimizer slots "
            f"{est['optimizer_slots_mib']:,.0f}"
            + (f", activations {act / MIB:,.0f} per batch of {est['batch_size']}" if act is not None else "")
        )
        raise SpecError(
            f"{spec.source}: model: training needs about {est['total_mib']:,.0f} MiB "
            f"({parts}), but this machine has {free / MIB:,.0f} MiB {where}; use fewer units or a smaller "
            f"train.batch_size, or pass {flag} to try anyway"
        )
    return est
