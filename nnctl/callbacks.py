"""Early stopping: watch a logged quantity, remember the best epoch, stop after ``patience`` epochs
without an improvement larger than ``min_delta``. Its state is saved for exact resume."""

from __future__ import annotations

from nnctl.metrics import higher_is_better


class EarlyStopping:
    def __init__(
        self,
        monitor: str = "val_loss",
        mode: str = "auto",
        patience: int = 5,
        min_delta: float = 0.0,
        restore_best: bool = True,
    ):
        self.monitor, self.patience, self.min_delta, self.restore_best = monitor, patience, abs(min_delta), restore_best
        self.mode = mode if mode != "auto" else ("max" if higher_is_better(monitor) else "min")
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.wait = 0
        self.stopped = False

    def improved(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best + self.min_delta if self.mode == "max" else value < self.best - self.min_delta

    def update(self, epoch: int, logs: dict) -> bool:
        """Record an epoch's logs; returns True when this epoch is the new best."""
        if self.monitor not in logs:
            raise KeyError(self.monitor)
        value = logs[self.monitor]
        if self.improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            return True
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped = True
        return False

    def state(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait, "stopped": self.stopped}

    def load_state(self, s: dict) -> None:
        self.best, self.best_epoch, self.wait, self.stopped = s["best"], s["best_epoch"], s["wait"], s["stopped"]
