"""The public training API: losses, ``value_and_grad``, ``train_step`` and ``predict``.

    loss, grads = value_and_grad(model, x, y)                                  # RHEL(eps=0.1)
    loss, grads = value_and_grad(model, x, y, gradient=BPTT(), memory=TimeChunks(1024))
    (loss, stats), grads = value_and_grad(model, x, y, key=key, return_stats=True)
    model = model.with_norm_stats(stats)                                       # what a training step must do
    model, opt_state, loss = train_step(model, opt_state, x, y, optimizer, key=key)   # all of the above
    logits = predict(model, x)

x (batch, L, in_dim); y integer labels (batch,) or regression targets (batch, L // output_step, out_dim).
Every function works with x and y passed as arguments or closed over under ``jax.jit``/``eqx.filter_jit``;
concrete inputs are checked (shapes, NaN/Inf, label range) before anything is traced. The arrays' shapes
are in the signatures as jaxtyping annotations (for readers and type checkers; nothing checks them at run time).
"""
from __future__ import annotations

import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

from ..core.choices import Choices
from ..core.gradients import SPSA
from .hssm import HSSM, Inputs, Outputs, has_running_statistics, norm_statistics_untouched, trainable
from .keywords import choices_at_entry
from .spsa import spsa_value_and_grad

# The arrays of the public functions besides the model's (``hssm.Inputs``, ``hssm.Outputs``): labels or
# targets, and the loss.
Targets = Int[ArrayLike, " batch"] | Float[ArrayLike, "batch outputs out_dim"]
Loss = Float[Array, ""]

# --- losses ---------------------------------------------------------------------------------------


def loss_from_outputs(task: str, outputs, y):
    """Cross-entropy (mean over batch; integer labels) or mean squared error."""
    if task == "classification":
        log_probs = jax.nn.log_softmax(outputs, axis=-1)
        return -jnp.mean(jnp.take_along_axis(log_probs, y[:, None].astype(jnp.int32), axis=-1))
    return jnp.mean(jnp.square(outputs - y))


def training_loss(model: HSSM, x, y, *, gradient=None, integrator=None, memory=None, key=None):
    """(loss, norm statistics) in training mode (batch-statistics norm; dropout when ``key``), x (N, L, in_dim).

    The choices as for :func:`value_and_grad` (default ``RHEL()``)."""
    return loss_and_statistics(model, x, y, Choices(gradient=gradient, integrator=integrator, memory=memory), key)


def loss_and_statistics(model: HSSM, x, y, choices: Choices, key=None):
    """:func:`training_loss` with checked choices."""
    outputs, stats = model.apply(x, choices, train=True, key=key)
    with jax.named_scope("loss"):
        return loss_from_outputs(model.task, outputs, y), stats


# --- input validation -----------------------------------------------------------------------------

def _is_concrete(a) -> bool:
    return not isinstance(a, jax.core.Tracer)


_FINITE_CHUNK = 1 << 16  # elements per slice of the NaN/Inf count


@jax.jit
def _not_finite(a):
    """Number of NaN/Inf entries of x (batch, ...), counted slice by slice: no temporary of x's size (x may be
    most of memory; a whole-array ``sum(~isfinite(a))`` materialised its int64 mask, 2× a float32 x, in the
    peak). Sample by sample, so that a batch split over devices is counted where it lies (slices of the
    flattened array gathered the whole batch onto every device)."""
    samples = a.reshape(a.shape[0], -1)
    chunk = max(1, _FINITE_CHUNK // a.shape[0])          # entries per sample and slice
    full = samples.shape[1] // chunk
    total_dtype = jax.dtypes.canonicalize_dtype(jnp.int64)
    count = lambda part: jnp.sum(~jnp.isfinite(part), axis=1, dtype=jnp.int32).astype(total_dtype)

    def body(i, total):
        return total + count(jax.lax.dynamic_slice_in_dim(samples, i * chunk, chunk, axis=1))

    zeros = jnp.zeros(samples.shape[:1], total_dtype)
    total = jax.lax.fori_loop(0, full, body, zeros) if full else zeros
    return jnp.sum(total + count(samples[:, full * chunk:]))


def _count_not_finite(a) -> int:
    """Number of NaN/Inf entries of a concrete array, computed eagerly even while a trace is open."""
    if isinstance(a, np.ndarray):
        return int(np.sum(~np.isfinite(a)))
    with jax.ensure_compile_time_eval():
        return int(_not_finite(a))


def _label_range(y) -> tuple[int, int]:
    with jax.ensure_compile_time_eval():
        return int(jnp.min(y)), int(jnp.max(y))


def check_inputs(model: HSSM, x, y=None):
    """Raise ``ValueError`` naming the argument for inputs the model cannot take.

    Shapes and dtypes are always checked; values (NaN/Inf, label range) when the arrays are concrete,
    including arrays closed over by a jitted function.
    """
    if not isinstance(model, HSSM):
        raise ValueError(f"model must be a hamecho.HSSM; got {type(model).__name__}")
    shape = tuple(jnp.shape(x))
    if len(shape) != 3:
        raise ValueError(f"x must have shape (batch, length, in_dim) (rank 3); got shape {shape}")
    if shape[2] != model.in_dim:
        raise ValueError(f"x has {shape[2]} features per step but the model expects in_dim={model.in_dim}")
    if shape[0] < 1 or shape[1] < 1:
        raise ValueError(f"x must have at least one sample and one step; got shape {shape}")
    if model.task == "regression" and shape[1] < model.output_step:
        raise ValueError(f"x has length {shape[1]}, shorter than output_step={model.output_step}")
    if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
        raise ValueError(f"x must be a floating-point array; got dtype {jnp.result_type(x)}")
    if _is_concrete(x):
        bad = _count_not_finite(x)
        if bad:
            raise ValueError(f"x contains {bad} NaN or Inf values; clean or fill them first "
                             "(hamecho.data fills missing values when loading)")
    if y is None:
        return
    y_shape = tuple(jnp.shape(y))
    if y_shape[:1] == (shape[1],) and shape[1] != shape[0]:
        raise ValueError(f"x has shape {shape} and y has {shape[1]} rows, matching x's second axis, not its first: "
                         "x looks time-major (length, batch, features). Models take batch-first x of shape "
                         f"(batch, length, in_dim) (layers are time-major): pass x.transpose(1, 0, 2), of shape "
                         f"{(shape[1], shape[0], shape[2])}")
    if model.task == "classification":
        if y_shape != (shape[0],):
            if len(y_shape) == 3 and y_shape[0] == shape[0] and jnp.issubdtype(jnp.result_type(y), jnp.floating):
                raise ValueError(
                    f"y has shape {y_shape}, the shape of regression targets (batch, length // output_step, "
                    f"out_dim), but the model is a classifier that needs integer labels of shape ({shape[0]},): "
                    "the dataset was read as regression (hamecho.data reads float labels, even whole numbers, "
                    "as regression targets). For classes, load it with task=\"classification\" "
                    "(from_arrays(X, y, task=\"classification\") or load_file(path, task=\"classification\")), "
                    "or give integer labels")
            raise ValueError(f"y must be integer labels of shape ({shape[0]},); got shape {y_shape}")
        if not jnp.issubdtype(jnp.result_type(y), jnp.integer):
            raise ValueError(f"y must hold integer class labels; got dtype {jnp.result_type(y)}")
        if _is_concrete(y) and y_shape[0]:
            low, high = _label_range(y)
            if low < 0 or high >= model.out_dim:
                raise ValueError(f"y has labels in [{low}, {high}] but the model has out_dim={model.out_dim} "
                                 f"classes (allowed 0..{model.out_dim - 1})")
    else:
        expected = (shape[0], shape[1] // model.output_step, model.out_dim)
        if y_shape != expected:
            raise ValueError(f"y must have shape (batch, length // output_step, out_dim) = {expected}; "
                             f"got {y_shape}")


# --- gradients and a training step -------------------------------------------------------------------

def model_value_and_grad(model, x, y, choices: Choices, key):
    """((loss, norm statistics), grads) of the training loss under ``choices``: autodiff through the model,
    the cores differentiated by the gradient method, or for ``SPSA`` loss evaluations (``hamecho.nn.spsa``)."""
    if isinstance(choices.gradient, SPSA):
        return spsa_value_and_grad(loss_and_statistics, model, x, y, choices, key)
    loss_fn = lambda m: loss_and_statistics(m, x, y, choices, key)
    return eqx.filter_value_and_grad(loss_fn, has_aux=True)(model)


@eqx.filter_jit
def _value_and_grad(model, x, y, choices, key):
    return model_value_and_grad(model, x, y, choices, key)

def value_and_grad(model: HSSM, x: Inputs, y: Targets, options=None, *, gradient=None, integrator=None,
                   memory=None, key: PRNGKeyArray | None = None, return_stats: bool = False,
                   **keywords) -> tuple[Loss, HSSM] | tuple[tuple[Loss, PyTree], HSSM]:
    """Training loss and its gradient with respect to the model.

    gradient: ``RHEL(...)`` (default ``RHEL(eps=0.1)``), ``BPTT(...)``, ``PhysicsAware(...)`` (with a device:
    its forward pass, its twin's backward pass) or ``SPSA(...)`` (loss evaluations; ``hamecho.nn.spsa``);
    integrator: ``Leapfrog``, ``AffineLeapfrog``, ``FixedPointLeapfrog``, a ``hamecho.physical`` device or
    None (the default per Hamiltonian); memory: None,
    ``RecomputeBlocks()``, ``TimeChunks(n)``, ``Streaming(chunk)`` (RHEL and ``HSSM(norm="layer")`` only:
    memory flat in the sequence length). ``key``: enables dropout (deterministic without).
    ``return_stats``: also return the norm statistics the training step updated, as
    ``((loss, stats), grads)``; keep them with ``model.with_norm_stats(stats)`` (``train_step`` does),
    or ``predict`` normalises with the initial statistics. ``grads`` has the structure ``eqx.filter_grad``
    gives (running norm statistics get zero gradient).

    Deprecated: the old keywords (``algo=``, ``eps=``, ``block_chunk=``, …) or a ``CoreOptions`` as
    ``options`` still give the same results, with a ``DeprecationWarning`` naming the strategy objects to
    write instead (``hamecho.nn.keywords``).
    """
    check_inputs(model, x, y)
    choices = choices_at_entry("value_and_grad", options, keywords, gradient=gradient, integrator=integrator,
                               memory=memory)
    (loss, stats), grads = _value_and_grad(model, x, y, choices, key)
    return ((loss, stats), grads) if return_stats else (loss, grads)


@eqx.filter_jit
def _train_step(model, opt_state, x, y, optimizer, choices, key):
    spec = optimizer_selection(optimizer, model, opt_state)
    (loss, stats), grads = model_value_and_grad(model, x, y, choices, key)
    with jax.named_scope("optimizer"):  # what the profiler reports the update under (docs/performance.md)
        updates, opt_state = optimizer.update(eqx.filter(grads, spec), opt_state, eqx.filter(model, spec))
        model = eqx.apply_updates(model, updates)
    return model.with_norm_stats(stats), opt_state, loss


def init_optimizer(optimizer, model):
    """The optax state for ``model``'s trainable arrays (what ``train_step`` expects; the Equinox idiom
    ``optimizer.init(eqx.filter(model, eqx.is_inexact_array))`` works too)."""
    return optimizer.init(eqx.filter(model, trainable(model)))


def optimizer_selection(optimizer, model, opt_state):
    """The arrays of ``model`` that ``opt_state`` was built over, as a bool pytree: ``trainable(model)``
    (:func:`init_optimizer`) or every inexact array (the Equinox idiom, which includes the norm running
    statistics: the step overwrites them with its own statistics, whatever the optimiser did to them).

    Decided from the structure of the state (while tracing: free under ``jit``); ``ValueError`` naming
    :func:`init_optimizer` when it matches neither.
    """
    target = jax.tree_util.tree_structure(opt_state)
    for spec in (trainable(model), jax.tree_util.tree_map(eqx.is_inexact_array, model)):
        if jax.tree_util.tree_structure(jax.eval_shape(optimizer.init, eqx.filter(model, spec))) == target:
            return spec
    raise ValueError("opt_state does not fit this model and optimizer: build it with "
                     "hamecho.init_optimizer(optimizer, model) (or optimizer.init(eqx.filter(model, "
                     "eqx.is_inexact_array))) from the same model and the same optimizer")


def train_step(model: HSSM, opt_state: PyTree, x: Inputs, y: Targets, optimizer, options=None, *, gradient=None,
               integrator=None, memory=None, key: PRNGKeyArray | None = None,
               **keywords) -> tuple[HSSM, PyTree, Loss]:
    """One optimiser step: (new model with updated norm statistics, new optimiser state, loss).

    ``optimizer``: an optax ``GradientTransformation`` (``optax.chain``, ``optax.MultiSteps`` too; build it
    once: a new one compiles anew); ``opt_state``: from :func:`init_optimizer`, or the Equinox idiom
    ``optimizer.init(eqx.filter(model, eqx.is_inexact_array))``. ``key``: enables dropout. The choices
    as in :func:`value_and_grad` (the old keywords likewise deprecated).
    """
    check_inputs(model, x, y)
    choices = choices_at_entry("train_step", options, keywords, gradient=gradient, integrator=integrator,
                               memory=memory)
    return _train_step(model, opt_state, x, y, optimizer, choices, key)


# --- inference --------------------------------------------------------------------------------------

@eqx.filter_jit
def _predict(model, x, choices):
    return model.apply(x, choices, train=False)[0]


def predict(model: HSSM, x: Inputs, *, integrator=None, memory=None) -> Outputs:
    """Inference-mode outputs: logits (batch, out_dim) or predictions (batch, L // k, out_dim).

    ``memory=he.Streaming(chunk)`` runs the stack chunk by chunk, so the memory does not grow with L (norm
    "layer" models; the same outputs up to rounding), where the plain pass keeps every block's activations
    over all L steps (gigabytes per sequence at L = 10⁶).

    Normalises with the running statistics; warns when they were never updated (a training loop that
    dropped the statistics ``value_and_grad(..., return_stats=True)`` returns). A norm "layer" model
    keeps none, so it never warns.
    """
    check_inputs(model, x)
    if has_running_statistics(model) and _is_concrete(model.blocks[0].norm.running_mean) \
            and norm_statistics_untouched(model):
        warnings.warn("predict: the model's norm running statistics were never updated (mean 0, variance 1), "
                      "so inputs are normalised as if they were standard; train with hamecho.train_step, or "
                      "keep the statistics value_and_grad(..., return_stats=True) returns "
                      "(model.with_norm_stats(stats))", UserWarning, stacklevel=2)
    return _predict(model, x, Choices(integrator=integrator, memory=memory))
