"""Learning-rate range test (Smith 2017, fastai's and Lightning's ``lr_find``): a short sweep with the rate
rising exponentially, lr_i = start (end / start)^(i / (steps - 1)), recording the training loss of each step.

The loss is smoothed (exponential average, beta 0.98, bias-corrected); the sweep stops early once the
smoothed loss exceeds ``diverge`` times its minimum. The suggested rate is where the smoothed loss falls
fastest against log(lr) (the steepest negative slope), skipping the first 10 points (Lightning) and
looking no further than the minimum (fastai). The model's weights, layer state, RNG states and optimizer
are restored afterwards: the sweep leaves nothing behind, and writes no checkpoint.
"""

from __future__ import annotations

import math
import pathlib

import numpy as np

from nnctl import backend as B
from nnctl import fs, losses
from nnctl.assemble import make_loss, make_optimizer, model_for_data
from nnctl.data import load_dataset
from nnctl.errors import SpecError
from nnctl.multi_spec import refuse_named
from nnctl.spec_model import Spec
from nnctl.train import Trainer

BETA = 0.98


def sweep(
    trainer: Trainer,
    x,
    y,
    start: float = 1e-7,
    end: float = 10.0,
    steps: int = 200,
    diverge: float = 4.0,
    seed: int = 0,
) -> dict:
    """Run the range test on ``trainer``'s model and restore it; rates, raw and smoothed losses, suggestion."""
    _check(start, end, steps)
    model, opt, strategy = trainer.model, trainer.optimizer, trainer.strategy
    kept_params = model.flat_params.copy()
    kept_state = {k: v.copy() for k, v in model.named_state().items()}
    kept_slots = {k: v.copy() for k, v in opt.slots.items()}
    kept_iterations, kept_rngs = opt.iterations, model.rng_states()
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(9,))))
    n = len(x)
    bs = trainer.cfg.batch_size
    bs = n if isinstance(bs, str) else min(int(bs), n)  # "full": batch gradient descent
    rates = start * (end / start) ** (np.arange(steps) / (steps - 1))
    raw: list[float] = []
    smoothed: list[float] = []
    avg, best, stopped = 0.0, math.inf, False
    order, pos = rng.permutation(n), 0
    try:
        for i, lr in enumerate(rates):
            if pos + bs > n:  # a new pass over the data, in a new order
                order, pos = rng.permutation(n), 0
            idx = np.sort(order[pos : pos + bs])
            pos += bs
            shard = strategy.shard(idx)  # under MPI: this rank's rows of the global batch (train.py's split)
            if len(shard.rows):
                xb = B.asarray(x[shard.rows], dtype=model.input_dtype)
                yb = B.asarray(y[shard.rows])
                value, _ = trainer.loss_and_grad(
                    xb, yb, scale=shard.scale, weights=trainer.batch_weights(yb, shard.rows)
                )
            else:  # fewer rows than ranks: a zero gradient, still exchanged
                model.flat_grads[...] = 0
                value = B.xp.zeros((), dtype=model.dtype)
            loss = float(B.to_numpy(value))
            if strategy.size > 1:  # the global batch's mean loss, the same on every rank
                totals = strategy.reduce(np.array([loss * len(shard.rows), len(shard.rows)], dtype=np.float64))
                loss = float(totals[0] / max(totals[1], 1))
            if model.has_regularization():
                loss += float(B.to_numpy(model.regularization(add_grads=True)))
            strategy.exchange(model.flat_grads)
            opt.step(model.flat_params, model.flat_grads, model.slices.values(), lr=float(lr))
            raw.append(loss)
            avg = BETA * avg + (1 - BETA) * loss if math.isfinite(loss) else math.inf
            s = avg / (1 - BETA ** (i + 1))
            smoothed.append(s)
            best = min(best, s)
            if not math.isfinite(s) or (i > 0 and s > diverge * best):
                stopped = True
                break
    finally:
        model.flat_params[...] = kept_params
        state = model.named_state()
        for k, v in kept_state.items():
            state[k][...] = v
        opt.slots.update(kept_slots)
        opt.iterations = kept_iterations
        model.set_rng_states(kept_rngs)
    done = len(raw)
    return {
        "rates": [float(r) for r in rates[:done]],
        "losses": raw,
        "smoothed": smoothed,
        "steps": done,
        "stopped_early": stopped,
        "suggestion": suggest(rates[:done], smoothed),
        "min_loss_rate": float(rates[int(np.nanargmin(np.where(np.isfinite(smoothed), smoothed, np.nan)))])
        if any(math.isfinite(s) for s in smoothed)
        else None,
    }


def _check(start: float, end: float, steps: int) -> None:
    if not 0 < start < end:
        raise SpecError(f"lr-find: --start must be positive and below --end, found {start:g} and {end:g}")
    if steps < 10:
        raise SpecError(f"lr-find: --steps: expected at least 10, found {steps}")


def suggest(rates, smoothed, skip_begin: int = 10) -> float | None:
    """The rate of the steepest fall of the smoothed loss against log(lr) before its minimum (past the minimum
    the loss is diverging, and its jumps are no guide); None for too short a sweep."""
    r = np.asarray(rates, dtype=np.float64)
    s = np.asarray(smoothed, dtype=np.float64)
    finite = np.isfinite(s)
    if finite.sum() < skip_begin + 3:
        return None
    r, s = r[finite], s[finite]
    lowest = int(np.argmin(s))
    r, s = r[skip_begin : lowest + 1], s[skip_begin : lowest + 1]
    if len(s) < 3:
        return None
    slope = np.gradient(s, np.log(r))
    return float(r[int(np.argmin(slope))])


def terminal_plot(result: dict, width: int = 60, height: int = 14) -> str:
    """Plain-text smoothed loss against log10(lr): '*' the curve, '|' the suggested rate."""
    rates, losses = np.asarray(result["rates"]), np.asarray(result["smoothed"], dtype=np.float64)
    ok = np.isfinite(losses)
    if ok.sum() < 2:
        return "lr-find: too few finite losses to plot"
    rates, losses = rates[ok], losses[ok]
    lx = np.log10(rates)
    lo, hi = float(losses.min()), float(np.percentile(losses, 95)) if len(losses) > 20 else float(losses.max())
    hi = hi if hi > lo else lo + 1.0
    grid = [[" "] * width for _ in range(height)]
    cols = np.round((lx - lx[0]) / max(lx[-1] - lx[0], 1e-12) * (width - 1)).astype(int)
    for c, v in zip(cols, losses):
        grid[int(round((hi - min(v, hi)) / (hi - lo) * (height - 1)))][c] = "*"
    if result.get("suggestion"):
        c = int(round((math.log10(result["suggestion"]) - lx[0]) / max(lx[-1] - lx[0], 1e-12) * (width - 1)))
        for cells in grid:
            if cells[c] == " ":
                cells[c] = "|"
    lines = [
        f"smoothed loss vs learning rate (log scale); suggested {result['suggestion']:.3g}"
        if result.get("suggestion")
        else "smoothed loss vs learning rate (log scale)"
    ]
    for i, cells in enumerate(grid):
        tick = f"{hi:.3g}" if i == 0 else f"{lo:.3g}" if i == height - 1 else ""
        lines.append(f"{tick:>9} |{''.join(cells)}".rstrip())
    lines.append(" " * 10 + "+" + "-" * width)
    left, right = f"{rates[0]:.0e}", f"{rates[-1]:.0e}"
    lines.append(" " * 11 + left + " " * max(width - len(left) - len(right), 1) + right)
    return "\n".join(lines)


def plot_png(result: dict, output_png) -> None:
    """The raw and smoothed loss against the rate (log x) as a PNG, the suggestion marked."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise SpecError(f"{output_png}: writing a PNG needs matplotlib (pip install matplotlib)") from None
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(result["rates"], result["losses"], color="0.75", linewidth=1, label="loss")
    ax.plot(result["rates"], result["smoothed"], color="C0", linewidth=2, label="smoothed")
    if result.get("suggestion"):
        ax.axvline(result["suggestion"], color="C3", linestyle="--", label=f"suggested {result['suggestion']:.3g}")
    finite = [v for v in result["smoothed"] if math.isfinite(v)]
    if finite:  # the divergence at the end would flatten the useful part of the curve
        ax.set_ylim(min(finite) - 0.05 * abs(min(finite)), np.percentile(finite, 95) * 1.1 + 1e-12)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.legend()
    fig.tight_layout()
    # the temporary file has no .png suffix, so the format is given explicitly
    fs.atomic_write(pathlib.Path(output_png), lambda tmp: fig.savefig(tmp, format="png", dpi=100))


def lr_find(
    spec: Spec, device: str = "auto", start: float = 1e-7, end: float = 10.0, steps: int = 200, strategy=None
) -> dict:
    """Build the spec's model, loss, optimizer and data as ``nnctl train`` does (class weights included, data
    augmentation not) and run the range test on them; ``strategy`` (a ``DataParallel``) shares every batch
    among MPI ranks as training does, so every rank sweeps the losses of one process."""
    _check(start, end, steps)

    refuse_named(spec, "lr-find")
    B.use(device)
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
        strategy=strategy,
    )
    if spec.train.class_weight is not None:
        trainer.class_weight = B.asarray(
            losses.class_weights(
                spec.train.class_weight,
                losses.label_ids(ds.y_train, ds.prep.task),
                trainer.n_classes,
                ds.prep.classes,
            )
        )
    trainer.sample_weight = ds.w_train
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        result = sweep(trainer, ds.x_train, ds.y_train, start, end, steps, seed=spec.seed)
    result["spec"] = spec.source
    return result
