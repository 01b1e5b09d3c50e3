"""Learning-rate schedules, evaluated at the start of each epoch (0-based ``epoch``).

- step:        lr0 * factor^floor(epoch / step_size)
- exponential: lr0 * decay_rate^(epoch / decay_epochs)
- cosine:      linear warmup from lr0/warmup_epochs to lr0 over ``warmup_epochs``, then
               min_lr + (lr0 - min_lr) (1 + cos(pi e / E)) / 2 with e the epochs after warmup, E the rest
- plateau:     reduce-on-plateau: lr * factor after ``patience`` epochs without an improvement of
               ``monitor`` by more than ``min_delta``, not below ``min_lr``; its state is saved for resume.
"""

from __future__ import annotations

import math

from nnctl.metrics import higher_is_better

TYPES = ("constant", "step", "exponential", "cosine", "plateau")


class Schedule:
    def __init__(self, base_lr: float, type: str = "constant", step_size: int = 10, factor: float = 0.5,
                 decay_rate: float = 0.9, decay_epochs: float = 1.0, warmup_epochs: int = 0, min_lr: float = 0.0,
                 total_epochs: int = 1, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0,
                 cooldown: int = 0):
        self.type, self.base_lr = type, float(base_lr)
        self.step_size, self.factor, self.decay_rate, self.decay_epochs = step_size, factor, decay_rate, decay_epochs
        self.warmup_epochs, self.min_lr, self.total_epochs = warmup_epochs, min_lr, total_epochs
        self.monitor, self.patience, self.min_delta, self.cooldown = monitor, patience, min_delta, cooldown
        self.current = self.base_lr  # plateau's running rate
        self.best: float | None = None
        self.wait = 0
        self.cooldown_left = 0

    def lr(self, epoch: int) -> float:
        if self.type == "step":
            return self.base_lr * self.factor ** (epoch // self.step_size)
        if self.type == "exponential":
            return self.base_lr * self.decay_rate ** (epoch / self.decay_epochs)
        if self.type == "cosine":
            if epoch < self.warmup_epochs:
                return self.base_lr * (epoch + 1) / self.warmup_epochs
            span = max(self.total_epochs - self.warmup_epochs, 1)
            e = min(epoch - self.warmup_epochs, span)
            return self.min_lr + (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * e / span)) / 2
        if self.type == "plateau":
            return self.current
        return self.base_lr

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
