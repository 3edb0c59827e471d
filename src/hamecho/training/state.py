"""The loop state of one run: everything besides the arrays that a checkpoint must hold to resume it.

Stored in checkpoints as the JSON object ``meta["loop"]`` (:meth:`LoopState.to_json`), with these keys
in this order; checkpoints written before this class existed hold the same object and load unchanged.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

__all__ = ["LoopState", "STOP_REASONS"]

# Why a run stopped: ``LoopState.stopped`` of a finished run (None while it trains).
STOP_REASONS = ("max_steps", "early_stopping", "time_limit", "diverged")


@dataclass(kw_only=True)
class LoopState:
    """Where one (configuration, algorithm, seed) run stands.

    step: optimiser steps taken. history: one dict per evaluation (see :mod:`hamecho.training.evaluation`).
    best_val, best_step: the best validation metric so far and the step it was reached at;
    test_at_best, test_loss_at_best: the test metric and loss at the last evaluation whose validation
    metric was at least as good as the best (ties count). since_improvement: evaluations since the
    validation metric last strictly improved. interval_loss_sum, interval_steps: training losses since
    the last evaluation. wall_s: wall-clock seconds of all sessions (saved at each checkpoint); sessions:
    how many processes have trained this run. stopped: one of ``STOP_REASONS`` or None. seed: the run's seed.
    """

    step: int = 0
    history: list[dict] = field(default_factory=list)
    best_val: float | None = None
    best_step: int | None = None
    test_at_best: float | None = None
    test_loss_at_best: float | None = None
    since_improvement: int = 0
    interval_loss_sum: float = 0.0
    interval_steps: int = 0
    wall_s: float = 0.0
    sessions: int = 0
    stopped: str | None = None
    seed: int

    def to_json(self) -> dict:
        """The JSON object stored in a checkpoint."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, stored: dict) -> LoopState:
        """The state a checkpoint's ``meta["loop"]`` holds (``ValueError`` if it is not one)."""
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(stored, dict) or set(stored) != names:
            got = sorted(stored) if isinstance(stored, dict) else type(stored).__name__
            raise ValueError(f"not a hamecho loop state: expected keys {sorted(names)}, got {got}")
        return cls(**stored)

    def record_step(self, loss: float) -> None:
        """One optimiser step taken, with its training loss."""
        self.step += 1
        self.interval_loss_sum += loss
        self.interval_steps += 1

    def interval_mean_loss(self) -> float:
        """Mean training loss of the steps since the last evaluation."""
        return self.interval_loss_sum / max(1, self.interval_steps)

    def record_at_least_best(self, val_metric: float, test_metric: float, test_loss: float, *, strict: bool) -> None:
        """An evaluation whose validation metric is at least as good as the best so far (``strict``: better)."""
        self.best_val, self.best_step = val_metric, self.step
        self.test_at_best, self.test_loss_at_best = test_metric, test_loss
        self.since_improvement = 0 if strict else self.since_improvement + 1

    def record_evaluation(self, entry: dict) -> None:
        """Append an evaluation to the history and start a new interval of training losses."""
        self.history.append(entry)
        self.interval_loss_sum, self.interval_steps = 0.0, 0
