"""An estimate of the memory a training run needs, from the built model's shapes (nothing is allocated).

With P parameters (T of them in the trainable buffer), S optimizer slots, itemsize b and batch size B:
parameters P*b, gradients T*b, optimizer slots S*T*b, activations B*b*(sum of every layer's output size per
sample), the outputs the backward pass keeps. Workspace of single operations (im2col buffers) is not counted.
"""

from __future__ import annotations

import numpy as np

MIB = 1 << 20


def _elements(shape) -> int:
    """Elements per sample of one output shape, or of a list of them (multi-output layers)."""
    if isinstance(shape, list):
        return sum(_elements(s) for s in shape)
    return int(np.prod(shape, dtype=np.int64))


def optimizer_slots(spec: dict) -> int:
    """How many parameter-sized buffers the spec's optimizer keeps (Adam 2, SGD with momentum 1, EMA +1)."""
    from nnctl.assemble import make_optimizer  # noqa: PLC0415

    opt = make_optimizer(spec)
    return len(opt.slot_names) + int(bool(getattr(opt, "use_ema", False)))


def training_memory(model, spec: dict) -> dict:
    """Bytes and MiB of parameters, gradients, optimizer slots and activations per batch of
    ``train.batch_size`` (activations are None for ``batch_size = "full"``, whose size is the data's)."""
    b = np.dtype(model.dtype).itemsize
    trainable, frozen = model.param_count()
    flat = int(model.flat_params.size) if model.flat_params is not None else trainable
    slots = optimizer_slots(spec)
    batch = spec["train"].get("batch_size", 32)
    per_sample = sum(_elements(n.output_shape) for n in model.nodes)
    parts = {"parameters": (trainable + frozen) * b, "gradients": flat * b, "optimizer_slots": slots * flat * b,
             "activations": None if batch == "full" else int(batch) * per_sample * b}
    total = sum(v for v in parts.values() if v is not None)
    out: dict = {"batch_size": batch, "dtype": str(np.dtype(model.dtype)), "optimizer_slots_per_parameter": slots}
    for k, v in {**parts, "total": total}.items():
        out[f"{k}_bytes"] = v
        out[f"{k}_mib"] = None if v is None else v / MIB
    return out
