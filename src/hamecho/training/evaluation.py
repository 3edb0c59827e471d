"""Evaluation and early stopping: the protocol's rules for the validation and test sets.

Every ``eval_every`` steps (and at the last step) the model is evaluated on the validation set in
inference mode; the test set is evaluated whenever validation is at least as good as the best so far,
and the reported test metric is the one of the last such evaluation (ties count). Early stopping
ends a run once ``patience`` + 1 consecutive evaluations have not strictly improved validation (the
paper's ``no_val_improvement > 10`` with patience 10). A validation metric that is not finite ends
the run as ``"diverged"``. Metric: accuracy for classification (higher is better), mean squared
error for regression (lower is better).

A history entry (one per evaluation) holds ``step``, ``train_loss`` (mean over the interval),
``val_<metric>``, ``val_loss``, ``elapsed_s``, ``step_ms`` (None when not measured), with
``eval_train``: ``train_<metric>``, ``train_eval_loss``, and where the test set was evaluated:
``test_<metric>``, ``test_loss``.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..core.choices import Choices
from ..core.gradients import BPTT
from ..nn.parallel import DataParallel
from .state import LoopState

__all__ = ["EarlyStopping", "EvalSplit", "Evaluator", "evaluate_split", "is_better", "metric_name"]


def metric_name(task: str) -> str:
    """"accuracy" (classification) or "mse" (regression)."""
    return "accuracy" if task == "classification" else "mse"


def is_better(task: str, value: float, best: float | None, *, strict: bool) -> bool:
    """Whether ``value`` beats (``strict``) or equals-or-beats ``best`` (None: nothing to beat)."""
    if best is None:
        return True
    if task == "classification":
        return value > best if strict else value >= best
    return value < best if strict else value <= best


@dataclass(frozen=True)
class EvalSplit:
    """One evaluation split, padded to a whole number of batches (padding is masked out).

    A batch is a multiple of ``multiple`` samples (the devices a data-parallel run splits it over).
    x (count + pad, L, C) in the run's dtype; y int32 labels (count + pad,) or targets
    (count + pad, L // k, out); mask (count + pad,) 1 for real samples; batch: samples per call;
    per_sample: numbers averaged per sample (regression: L // k · out; classification: 1).
    """

    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray
    count: int
    batch: int
    per_sample: int

    @classmethod
    def from_arrays(cls, x: np.ndarray, y: np.ndarray, task: str, dtype, eval_batch: int,
                    multiple: int = 1) -> EvalSplit:
        n = len(x)
        batch = -(-max(1, min(eval_batch, n)) // multiple) * multiple
        pad = -(-n // batch) * batch - n
        x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)]).astype(dtype) if pad else x.astype(dtype)
        if task == "classification":
            y = y.astype(np.int32)
            per_sample = 1
        else:
            y = y.astype(dtype)
            per_sample = int(np.prod(y.shape[1:]))
        if pad:
            y = np.concatenate([y, np.zeros((pad,) + y.shape[1:], y.dtype)])
        mask = np.concatenate([np.ones(n, dtype), np.zeros(pad, dtype)])
        return cls(x, y, mask, n, batch, per_sample)


@eqx.filter_jit
def _batch_sums(model, x, y, mask, choices: Choices):
    """(sum of the metric, sum of the loss) over the unmasked samples of one batch, in inference mode."""
    outputs, _ = model.apply(x, choices, train=False)
    if model.task == "classification":
        log_probs = jax.nn.log_softmax(outputs, axis=-1)
        nll = -jnp.take_along_axis(log_probs, y[:, None], axis=-1)[:, 0]
        correct = (jnp.argmax(outputs, axis=-1) == y).astype(outputs.dtype)
        return jnp.sum(correct * mask), jnp.sum(nll * mask)
    squared = jnp.sum(jnp.square(outputs - y), axis=(1, 2))
    return jnp.sum(squared * mask), jnp.sum(squared * mask)


INFERENCE = Choices(gradient=BPTT())


def evaluate_split(model, split: EvalSplit, task: str, choices: Choices = INFERENCE,
                   layout: DataParallel | None = None) -> tuple[float, float]:
    """(metric, mean loss) of ``model`` in inference mode on one split; NaN for an empty split.

    ``choices``: how the cores run (default: the model's own integrator; a run on a physical device
    evaluates on that device, ``Choices(gradient=RHEL(), integrator=device)``). ``layout``: each batch split
    over a data-parallel run's devices (this process feeding its rows)."""
    if split.count == 0:
        return float("nan"), float("nan")
    metric_sum = loss_sum = 0.0
    for start in range(0, len(split.x), split.batch):
        batch = slice(start, start + split.batch)
        arrays = split.x[batch], split.y[batch], split.mask[batch]
        if layout is not None:
            rows = layout.local_rows(split.batch)
            arrays = layout.from_local(*(a[rows] for a in arrays), batch=split.batch)
        metric, loss = _batch_sums(model, *arrays, choices)
        metric_sum += float(metric)
        loss_sum += float(loss)
    denominator = split.count * split.per_sample
    return metric_sum / denominator, loss_sum / denominator


@dataclass(frozen=True)
class Evaluator:
    """The validation and test splits (and the training set when ``eval_train``) of one run."""

    task: str
    val: EvalSplit
    test: EvalSplit
    train: EvalSplit | None = None
    choices: Choices = INFERENCE
    layout: DataParallel | None = None

    @classmethod
    def for_data(cls, data, dtype, eval_batch: int, eval_train: bool, choices: Choices = INFERENCE,
                 layout: DataParallel | None = None) -> Evaluator:
        """The splits of a ``hamecho.data.DatasetSplits`` in ``dtype``, ``eval_batch`` samples per call
        (rounded up to a multiple of a data-parallel ``layout``'s devices); ``choices``: how the cores run
        (:func:`evaluate_split`)."""
        def split(x, y):
            return EvalSplit.from_arrays(x, y, data.task, dtype, eval_batch, 1 if layout is None else layout.size)
        return cls(data.task, split(data.x_val, data.y_val), split(data.x_test, data.y_test),
                   split(data.x_train, data.y_train) if eval_train else None, choices, layout)

    @property
    def metric(self) -> str:
        return metric_name(self.task)

    def _evaluate(self, model, split: EvalSplit) -> tuple[float, float]:
        return evaluate_split(model, split, self.task, self.choices, self.layout)

    def evaluate(self, model, state: LoopState, *, elapsed: Callable[[], float], step_ms: float | None) -> dict:
        """Evaluate ``model`` at ``state.step``, record it in ``state`` and return the history entry.

        ``elapsed()``: the run's wall-clock seconds so far (read once validation is done). The test split
        is evaluated only when validation is at least as good as the best so far; a validation metric
        that is not finite sets ``state.stopped = "diverged"``.
        """
        m = self.metric
        val_metric, val_loss = self._evaluate(model, self.val)
        entry = {"step": state.step, "train_loss": state.interval_mean_loss(), f"val_{m}": val_metric,
                 "val_loss": val_loss, "elapsed_s": elapsed(), "step_ms": step_ms}
        if self.train is not None:
            entry[f"train_{m}"], entry["train_eval_loss"] = self._evaluate(model, self.train)
        if not math.isfinite(val_metric):
            state.stopped = "diverged"
        elif is_better(self.task, val_metric, state.best_val, strict=False):
            test_metric, test_loss = self._evaluate(model, self.test)
            entry[f"test_{m}"], entry["test_loss"] = test_metric, test_loss
            state.record_at_least_best(val_metric, test_metric, test_loss,
                                       strict=is_better(self.task, val_metric, state.best_val, strict=True))
        else:
            state.since_improvement += 1
        state.record_evaluation(entry)
        return entry


@dataclass(frozen=True)
class EarlyStopping:
    """Stop once ``patience`` + 1 evaluations in a row have not strictly improved validation."""

    enabled: bool
    patience: int

    def check(self, state: LoopState) -> None:
        """Set ``state.stopped = "early_stopping"`` when the run has run out of patience."""
        if self.enabled and state.since_improvement > self.patience:
            state.stopped = "early_stopping"
