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

__all__ = ["EarlyStopping", "EvalSplit", "Evaluator", "evaluate_split", "is_better", "metric_name", "split_reader"]


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


def split_reader(data, split: str, dtype) -> tuple[int, Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]]:
    """(size, read) of one split of ``data``: ``read(indices)`` gives (x in ``dtype``, y: int32 labels or targets
    in ``dtype``) of those samples. ``data``: a ``DatasetSplits`` (arrays, converted once) or a source with
    ``batch(split, indices)`` (``hamecho.data.generated.GeneratedSplits``: only the samples asked for are made)."""
    def convert(x, y):
        return x.astype(dtype, copy=False), y.astype(np.int32 if data.task == "classification" else dtype, copy=False)

    if hasattr(data, "batch"):
        return data.size(split), lambda indices: convert(*data.batch(split, indices))
    x, y = convert(getattr(data, f"x_{split}"), getattr(data, f"y_{split}"))
    return len(x), lambda indices: (x[indices], y[indices])


@dataclass(frozen=True)
class EvalSplit:
    """One evaluation split, read batch by batch and padded to a whole batch (padding is masked out).

    A batch is a multiple of ``multiple`` samples (the devices a data-parallel run splits it over).
    count: real samples; read(indices) -> (x (n, L, C) in the run's dtype, y int32 labels (n,) or targets
    (n, L // k, out)) (:func:`split_reader`); batch: samples per call; per_sample: numbers averaged per sample
    (regression: L // k · out; classification: 1).
    """

    count: int
    read: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
    batch: int
    per_sample: int

    @classmethod
    def from_data(cls, data, split: str, dtype, eval_batch: int, multiple: int = 1) -> EvalSplit:
        """``split`` of a ``DatasetSplits`` or a generated source (:func:`split_reader`)."""
        count, read = split_reader(data, split, dtype)
        batch = -(-max(1, min(eval_batch, count)) // multiple) * multiple
        per_sample = 1 if data.task == "classification" else data.out_dim * (data.length // data.output_step)
        return cls(count, read, batch, per_sample)

    def starts(self) -> range:
        """The first sample of every batch."""
        return range(0, self.count, self.batch)

    def arrays(self, start: int, rows: slice = slice(None)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x, y, mask) of ``rows`` of the batch starting at ``start``, samples past the end zero with mask 0."""
        index = np.arange(start, start + self.batch)[rows]
        real = index[index < self.count]
        x, y = self.read(real)
        pad = len(index) - len(real)
        if pad:
            x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
            y = np.concatenate([y, np.zeros((pad,) + y.shape[1:], y.dtype)])
        return x, y, (index < self.count).astype(x.dtype)


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
    for start in split.starts():
        if layout is None:
            arrays = split.arrays(start)
        else:
            arrays = layout.from_local(*split.arrays(start, layout.local_rows(split.batch)), batch=split.batch)
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
        """The splits of a ``hamecho.data.DatasetSplits`` or a generated source (made batch by batch) in
        ``dtype``, ``eval_batch`` samples per call (rounded up to a multiple of a data-parallel ``layout``'s
        devices); ``choices``: how the cores run (:func:`evaluate_split`)."""
        def split(name):
            return EvalSplit.from_data(data, name, dtype, eval_batch, 1 if layout is None else layout.size)
        return cls(data.task, split("val"), split("test"), split("train") if eval_train else None, choices, layout)

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
