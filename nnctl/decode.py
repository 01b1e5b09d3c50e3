"""Greedy decoding for teacher-forced sequence models whose one input is [source ids ; decoder input ids].

A model trained by teacher forcing sees x = [s_0 .. s_{S-1}, START, y_0 .. y_{D-2}] (T = S + D ids) and
outputs p (N, D, K), p[:, t] = P(y_t | source, decoder inputs 0..t). At predict time the y's are unknown:
``greedy_decode`` starts from [source ; START, 0, ..., 0] and, for t = 0, 1, ..., writes
argmax_k p[:, t, k] into decoder input t + 1 before the next pass (``model.decode`` in the spec).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from nnctl.errors import DataError

if TYPE_CHECKING:
    from nnctl.spec_sections import Decode


def greedy_decode(model, x_source, cfg: Decode) -> np.ndarray:
    """Decode step by step: pass t runs the model (inference mode) and sets dec[t+1] = argmax p[:, t]; p (N, steps, K).

    One full pass per output step is exact, not an approximation, for causal decoders (a forward LSTM/GRU,
    causal attention): decoder step t only sees decoder inputs <= t, so the placeholder ids after t
    change nothing at steps <= t, and the last pass's p[:, t] equals p[:, t] of pass t, which produced
    the id fed back at t + 1. x_source (N, S) ids with S = cfg.source_length; the model's input is
    (S + D,) ids and its output (D, K); steps = cfg.steps (default D) <= D.
    """
    S, start = int(cfg.source_length), int(cfg.start_token)
    shape_in, shape_out = tuple(model.input_shape), model.output_shape
    if len(shape_in) != 1 or not 0 < S < shape_in[0] or isinstance(shape_out, list) or len(shape_out) != 2:
        raise DataError(
            f"model.decode: needs a model with one input of ids (source_length + decoder steps,) "
            f"longer than source_length {S} and one output (steps, classes); found input "
            f"{list(shape_in)} and output {shape_out}"
        )
    D = shape_in[0] - S
    steps = int(cfg.steps or shape_out[0])
    if not 1 <= steps <= min(D, shape_out[0]):
        raise DataError(
            f"model.decode.steps: expected 1 to {min(D, shape_out[0])} (the decoder's length), found {steps}"
        )
    src = np.asarray(x_source)
    if src.ndim == 1 and len(src) == S:
        src = src[None]
    if src.ndim != 2 or src.shape[1] != S:
        raise DataError(
            f"input: expected {S} columns (the source ids, model.decode.source_length), "
            f"found rows of shape {list(src.shape[1:])}"
        )
    ids = np.rint(src.astype(np.float64))
    if not np.all(np.isfinite(src.astype(np.float64))) or np.any(ids != src):
        raise DataError(f"input: source ids must be whole numbers, found {src[ids != src].ravel()[:1].tolist()}")
    x = np.zeros((len(src), S + D), dtype=np.int64)
    x[:, :S], x[:, S] = ids.astype(np.int64), start
    model.check_input(x, "input")  # the source ids; the decoder's own are argmaxes, always in the table
    for t in range(steps - 1):  # t + 1 < steps <= D: every pass but the last feeds its argmax back
        x[:, S + t + 1] = model.predict(x)[:, t].argmax(axis=-1)
    return model.predict(x)[:, :steps]
