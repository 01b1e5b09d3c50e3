"""Learning-rate schedules, evaluated before every optimizer step from the step's place in training.

``rate(epoch, batch, batches)`` is a pure function of that place (plus plateau's saved state), so a
resumed run, mid-epoch or not, gets exactly the rates of an uninterrupted one. With s the global step
(epoch * batches + batch), W the warmup steps (``warmup_steps``, or ``warmup_epochs`` * batches), lr0 the
optimizer's rate, t = (s - W) / batches the epochs since warmup and T = total_epochs - W / batches:
- warmup (any type): lr(0) (s + 1) / W for s < W, lr(0) the schedule's first rate; then the schedule on t
- constant:    lr0
- step:        lr0 factor^floor(t / step_size)
- multistep:   lr0 factor^(number of milestones <= t)
- exponential: lr0 decay_rate^(t / decay_epochs)
- cosine:      min_lr + (lr0 - min_lr) (1 + cos(pi t / T)) / 2
- polynomial:  min_lr + (lr0 - min_lr) (1 - t / T)^power
- cosine_restarts: cosine over cycles of cycle_epochs, each t_mul times longer and m_mul times lower than the
               last (Keras's CosineDecayRestarts; SGDR, Loshchilov and Hutter 2017)
- one_cycle:   PyTorch's OneCycleLR on the S = T * batches steps: cosine from lr0 / div_factor up to lr0 until
               step pct_start S - 1, then down to lr0 / div_factor / final_div_factor at step S - 1
- plateau:     reduce-on-plateau: lr * factor after ``patience`` epochs without an improvement of
               ``monitor`` by more than ``min_delta``, not below ``min_lr``; its state is saved for resume.
Times are in epochs (fractions allowed), so milestones and cycles mean the same whatever the batch size.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable

from nnctl.metrics import higher_is_better
from nnctl.registry import Registry

#: each kind's rate after warmup: ``f(schedule, steps, t, span, batches)`` with ``steps`` and ``t`` the steps and
#: epochs since warmup and ``span`` = T; the aliases are Keras's and PyTorch's class names for the same schedule
KINDS: Registry[Callable[..., float]] = Registry("schedule")


def _cos(start: float, end: float, pct: float) -> float:
    """Cosine from ``start`` (pct 0) to ``end`` (pct 1)."""
    return end + (start - end) * (1 + math.cos(math.pi * min(max(pct, 0.0), 1.0))) / 2


class Schedule:
    def __init__(
        self,
        base_lr: float,
        type: str = "constant",
        step_size: int = 10,
        factor: float = 0.5,
        decay_rate: float = 0.9,
        decay_epochs: float = 1.0,
        warmup_epochs: float = 0,
        warmup_steps: int = 0,
        min_lr: float = 0.0,
        total_epochs: int = 1,
        monitor: str = "val_loss",
        patience: int = 5,
        min_delta: float = 0.0,
        cooldown: int = 0,
        milestones: list | None = None,
        power: float = 1.0,
        cycle_epochs: float = 10.0,
        t_mul: float = 2.0,
        m_mul: float = 1.0,
        pct_start: float = 0.3,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
    ):
        self.type, self.base_lr = KINDS.canonical(type), float(base_lr)
        self.step_size, self.factor, self.decay_rate, self.decay_epochs = step_size, factor, decay_rate, decay_epochs
        self.warmup_epochs, self.warmup_steps = float(warmup_epochs), int(warmup_steps)
        self.min_lr, self.total_epochs = min_lr, total_epochs
        self.monitor, self.patience, self.min_delta, self.cooldown = monitor, patience, min_delta, cooldown
        self.milestones = sorted(float(m) for m in milestones or ())
        self.power, self.cycle_epochs, self.t_mul, self.m_mul = power, cycle_epochs, t_mul, m_mul
        self.pct_start, self.div_factor, self.final_div_factor = pct_start, div_factor, final_div_factor
        self.current = self.base_lr  # plateau's running rate
        self.best: float | None = None
        self.wait = 0
        self.cooldown_left = 0

    def lr(self, epoch: int) -> float:
        """The rate of an epoch counted as one step (warmup_steps then count epochs)."""
        return self.rate(epoch, 0, 1)

    def warmup(self, batches: int) -> int:
        """Warmup length in steps."""
        return self.warmup_steps or round(self.warmup_epochs * batches)

    def rate(self, epoch: int, batch: int = 0, batches: int = 1) -> float:
        """The learning rate of step ``batch`` (0-based) of ``epoch`` (0-based), ``batches`` steps per epoch."""
        batches = max(int(batches), 1)
        s = epoch * batches + batch
        w = self.warmup(batches)
        if s < w:
            return self._main(0, 0.0, batches, w) * (s + 1) / w
        return self._main(s - w, (s - w) / batches, batches, w)

    def _main(self, steps: int, t: float, batches: int, warmup: int) -> float:
        """The schedule ``steps`` steps (``t`` epochs) after its warmup."""
        span = max(self.total_epochs - warmup / batches, 1e-12)
        return KINDS.get(self.type)(self, steps, t, span, batches)

    def _restarts(self, t: float) -> float:
        done = t / self.cycle_epochs  # in units of the first cycle
        if self.t_mul == 1.0:
            i = math.floor(done)
            frac = done - i
        else:
            i = math.floor(math.log(1 - done * (1 - self.t_mul)) / math.log(self.t_mul))
            frac = (done - (1 - self.t_mul**i) / (1 - self.t_mul)) / self.t_mul**i
        top = self.min_lr + (self.base_lr - self.min_lr) * self.m_mul**i
        return _cos(top, self.min_lr, frac)

    def _one_cycle(self, step: int, total: int) -> float:
        peak = self.base_lr
        start = peak / self.div_factor
        end = start / self.final_div_factor
        up = self.pct_start * total - 1
        if step <= up:
            return _cos(start, peak, step / up if up > 0 else 1.0)
        return _cos(peak, end, (step - up) / (total - 1 - up))

    def end_epoch(self, logs: dict) -> None:
        """Reduce-on-plateau bookkeeping after an epoch's metrics are known."""
        if self.type != "plateau" or self.monitor not in logs:
            return
        value = logs[self.monitor]
        sign = -1.0 if higher_is_better(self.monitor) else 1.0
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
        if self.best is None or sign * (value - self.best) < -self.min_delta:
            self.best, self.wait = value, 0
            return
        if self.cooldown_left > 0:
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.current = max(self.current * self.factor, self.min_lr)
            self.wait, self.cooldown_left = 0, self.cooldown

    def state(self) -> dict:
        return {"current": self.current, "best": self.best, "wait": self.wait, "cooldown_left": self.cooldown_left}

    def load_state(self, state: dict) -> None:
        self.current, self.best = state["current"], state["best"]
        self.wait, self.cooldown_left = state["wait"], state["cooldown_left"]


@KINDS.register("constant", "ConstantLR")
def _constant(s: Schedule, steps: int, t: float, span: float, batches: int) -> float:
    return s.base_lr


@KINDS.register("step", "StepLR")
def _step(s: Schedule, steps: int, t: float, span: float, batches: int) -> float:
    return s.base_lr * s.factor ** math.floor(t / s.step_size + 1e-9)


@KINDS.register("multistep", "MultiStepLR")
def _multistep(s: Schedule, steps: int, t: float, span: float, batches: int) -> float:
    return s.base_lr * s.factor ** bisect.bisect_right(s.milestones, t + 1e-9)


@KINDS.register("exponential", "ExponentialDecay", "ExponentialLR")
def _exponential(s: Schedule, steps: int, t: float, span: float, batches: int) -> float:
    return s.base_lr * s.decay_rate ** (t / s.decay_epochs)


@KINDS.register("cosine", "CosineDecay", "CosineAnnealingLR")
def _cosine(s: Schedule, steps: int, t: float, span: float, batches: int) -> float:
    return _cos(s.base_lr, s.min_lr, t / span)


@KINDS.register("polynomial", "PolynomialDecay", "PolynomialLR")
def _polynomial(s: Schedule, steps: int, t: float, span: float, batches: int) -> float:
    return s.min_lr + (s.base_lr - s.min_lr) * (1 - min(t, span) / span) ** s.power


@KINDS.register("cosine_restarts", "CosineDecayRestarts", "CosineAnnealingWarmRestarts")
def _cosine_restarts(s: Schedule, steps: int, t: float, span: float, batches: int) -> float:
    return s._restarts(t)


@KINDS.register("one_cycle", "OneCycleLR")
def _one_cycle(s: Schedule, steps: int, t: float, span: float, batches: int) -> float:
    return s._one_cycle(steps, max(round(span * batches), 2))


@KINDS.register("plateau", "ReduceLROnPlateau")
def _plateau(s: Schedule, steps: int, t: float, span: float, batches: int) -> float:
    return s.current


def check(table: dict | None) -> list[str]:
    """Problems in a validated ``train.lr_schedule`` table that involve more than one key."""
    if not isinstance(table, dict):
        return []
    problems = []
    if table.get("warmup_steps") and table.get("warmup_epochs"):
        problems.append("train.lr_schedule.warmup_steps: warmup_epochs is also set; keep one of them")
    if table.get("type") == "multistep" and not table.get("milestones"):
        problems.append(
            "train.lr_schedule.milestones: multistep needs the epochs at which the rate drops, "
            "e.g. milestones = [30, 60]"
        )
    return problems
