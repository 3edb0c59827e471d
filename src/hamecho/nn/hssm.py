"""HSSM: a stack of HRU blocks between an encoder and a task head, plus the public training API.

    x (N, L, in_dim) ─ [time channel] ─ encoder Dense(in→H) ─ blocks × n ─ head

    block:  skip = x → BatchNorm → HRU layer → GELU → dropout → GLU → dropout → x = skip + x
    head:   classification: mean over time → Dense(H→classes)            → logits (N, classes)
            regression:     every output_step-th step → Dense(H→out) → tanh → (N, L // k, out)

RHEL or BPTT differentiates the Hamiltonian cores (``CoreOptions``); everything else is ordinary
autodiff, so JAX's backward traversal *is* RHEL's chaining through the stack (spec §3).
"""
from __future__ import annotations

import math
from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..core.echo import ALGOS, CoreOptions, hamiltonian_core_with_state
from .layers import GLU, HRU, HRU_KINDS, BatchNorm, Dense, apply_dropout, dropout_keep_mask

TASKS = ("classification", "regression")
DROPOUT_RATE = 0.05


def default_dtype():
    """float64 when JAX's x64 mode is on, float32 otherwise."""
    return jnp.zeros(()).dtype


def recompute_in_backward(fn):
    """``fn`` whose reverse-mode derivative stores only its arguments and recomputes ``fn`` when the
    cotangent arrives (rematerialisation). Arguments: pytrees of arrays (``None`` allowed).

    Why not ``jax.checkpoint``: on XLA CPU its recomputation is merged back into the forward pass, so the
    compiled step keeps every activation anyway (benchmarks/remat_check.py). Here the recomputation
    takes its inputs through ``a + 0·g`` with ``g`` an element of the incoming cotangent: a float
    multiply by zero is not simplified away (it is NaN for inf), so the recomputation cannot start
    before the backward pass reaches it, and its activations live only while this block is
    differentiated.
    """

    @jax.custom_vjp
    def wrapped(*args):
        return fn(*args)

    def forward(*args):
        return fn(*args), args

    def backward(args, cotangent):
        first = jnp.ravel(jax.tree_util.tree_leaves(cotangent)[0])[0]
        tie = lambda a: a + (first * 0).astype(a.dtype) if jnp.issubdtype(a.dtype, jnp.inexact) else a
        _, vjp = jax.vjp(fn, *jax.tree_util.tree_map(tie, args))
        return vjp(cotangent)  # integer inputs (random keys) get float0 cotangents from jax.vjp

    wrapped.defvjp(forward, backward)
    return wrapped


class Block(eqx.Module):
    """Norm → HRU → GELU → dropout → GLU → dropout → residual, on (L, N, H)."""

    norm: BatchNorm
    hru: HRU
    glu: GLU

    def __init__(self, hidden: int, state: int, hru: str, *, key, dtype, hru_kwargs=None):
        hru_key, glu_key = jax.random.split(key)
        self.norm = BatchNorm(hidden, dtype=dtype)
        self.hru = HRU_KINDS[hru](hidden, state, key=hru_key, dtype=dtype, **(hru_kwargs or {}))
        self.glu = GLU(hidden, key=glu_key, dtype=dtype)

    def __call__(self, x, options: CoreOptions, *, train: bool, key=None):
        """x (L, N, H) → (x', (running mean, running var)); dropout only when ``key`` is given.

        Memory options (same outputs and gradients): ``options.block_chunk`` runs the block over time
        chunks (:meth:`forward_in_chunks`); ``options.recompute_blocks`` keeps only ``x`` (H numbers per
        step and sample) and recomputes the whole block in the backward pass (:func:`recompute_in_backward`).
        """
        if options.block_chunk is not None:
            return self.forward_in_chunks(x, options, train=train, key=key)
        if options.recompute_blocks:
            params, static = eqx.partition(self, eqx.is_array)
            run = lambda params, x, key: eqx.combine(params, static).forward(x, options, train=train, key=key)
            return recompute_in_backward(run)(params, x, key)
        return self.forward(x, options, train=train, key=key)

    def forward(self, x, options: CoreOptions, *, train: bool, key=None):
        """The block's computation (``__call__`` without the memory options)."""
        normed, stats = self.norm(x, train)
        return self.after_hru(x, self.hru(normed, options), self.dropout_masks(key, x.shape)), stats

    def dropout_masks(self, key, shape):
        """The block's two dropout keep-masks for an input of ``shape`` (None, None without ``key``)."""
        keys = (None, None) if key is None else jax.random.split(key)
        return tuple(dropout_keep_mask(k, DROPOUT_RATE, shape) for k in keys)

    def after_hru(self, x, hru_output, keep_masks):
        """Everything after the HRU layer, local in time: GELU → dropout → GLU → dropout → x + ·."""
        h = apply_dropout(jax.nn.gelu(hru_output), keep_masks[0], DROPOUT_RATE)
        return x + apply_dropout(self.glu(h), keep_masks[1], DROPOUT_RATE)

    def forward_in_chunks(self, x, options: CoreOptions, *, train: bool, key=None):
        """``forward`` computed as a scan over time chunks of about ``options.block_chunk`` steps, each
        chunk under ``jax.checkpoint``: same outputs, statistics and gradients (without dropout; with it,
        other draws), far less memory.

        Everything in a block is local in time except the norm's statistics (over all of (L, N): computed
        first, from the whole input) and the HRU's state (carried from chunk to chunk,
        ``echo.hamiltonian_core_with_state``). Dropout masks are drawn per chunk from
        ``fold_in(key, chunk index)`` (so they are recomputed, never stored; the draws differ from
        ``forward``'s, with the same distribution). Under autodiff the block keeps its input x (read by chunk
        index, never copied per chunk) and the HRU state at each chunk's start; each chunk's activations
        are recomputed during the backward pass, one chunk at a time. With algo "bptt" the
        core is differentiated inside the recomputed chunk (BPTT checkpointed over chunks); with "rhel"
        each chunk's echo receives the next chunk's echo state as its final state's cotangent.
        """
        length, batch = x.shape[:2]
        n_chunks, size = chunk_layout(length, options.block_chunk)
        mean, var, stats = self.norm.statistics(x, train)
        hru = self.hru
        theta = hru.core_parameters()
        zeros = jnp.zeros((batch, hru.state_size), options.compute_dtype(x.dtype))
        chunks = _pad_time(x, n_chunks * size).reshape((n_chunks, size) + x.shape[1:])

        @partial(jax.checkpoint, prevent_cse=False)
        def run_chunk(state, index):
            x_chunk = chunks[index]  # read from the whole input (a scan input would be stored again)
            normed = self.norm.normalise(x_chunk, mean, var)
            positions, state = hamiltonian_core_with_state(hru.hamiltonian, options, theta, hru.drives(normed), state)
            keep = self.dropout_masks(None if key is None else jax.random.fold_in(key, index), x_chunk.shape)
            return state, self.after_hru(x_chunk, hru.readout(positions, normed), keep)

        _, out = jax.lax.scan(run_chunk, (zeros, zeros), jnp.arange(n_chunks))
        return out.reshape((n_chunks * size,) + out.shape[2:])[:length], stats


def chunk_layout(length: int, chunk: int) -> tuple[int, int]:
    """(number of chunks, chunk size) for ``length`` steps in chunks of at most ``chunk`` steps.

    Prefers a divisor of ``length`` between chunk/2 and chunk (no padding, so no copy of the sequence);
    otherwise the fewest chunks with the least padding.
    """
    chunk = max(1, min(chunk, length))
    for size in range(chunk, (chunk + 1) // 2 - 1, -1):
        if length % size == 0:
            return length // size, size
    n_chunks = -(-length // chunk)
    return n_chunks, -(-length // n_chunks)


def _pad_time(a, length: int):
    """a (L, ...) padded with zeros to ``length`` steps (after the end: they cannot change earlier steps)."""
    pad = length - a.shape[0]
    return jnp.pad(a, ((0, pad),) + ((0, 0),) * (a.ndim - 1)) if pad else a


class HSSM(eqx.Module):
    """Hamiltonian state-space model (spec §5). See the module docstring for the layout.

    Arguments: in_dim (features per step, without the time channel), out_dim (classes, or targets
    per kept step), hidden H, state P (oscillators per HRU; the linear HRU uses 2P real channels),
    blocks, hru ("linear" | "nonlinear"), task ("classification" | "regression"), output_step k
    (regression reads every k-th step, so targets have L // k steps), time_channel (prepend
    t = k/L as feature 0), step (nonlinear HRU's initial δ), dtype (default: float64 under x64,
    else float32), key.
    """

    encoder: Dense
    blocks: tuple[Block, ...]
    head: Dense
    task: str = eqx.field(static=True)
    output_step: int = eqx.field(static=True)
    time_channel: bool = eqx.field(static=True)
    in_dim: int = eqx.field(static=True)
    out_dim: int = eqx.field(static=True)
    hru_kind: str = eqx.field(static=True)

    def __init__(self, *, in_dim: int, out_dim: int, hidden: int = 64, state: int = 16, blocks: int = 6,
                 hru: str = "linear", task: str = "classification", output_step: int = 1,
                 time_channel: bool = False, step: float = 1e-4, dtype=None, key):
        if hru not in HRU_KINDS:
            raise ValueError(f"hru must be one of {', '.join(map(repr, HRU_KINDS))}; got {hru!r}")
        if task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(map(repr, TASKS))}; got {task!r}")
        for name, value in (("in_dim", in_dim), ("out_dim", out_dim), ("hidden", hidden), ("state", state),
                            ("blocks", blocks), ("output_step", output_step)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        if task == "classification" and out_dim < 2:
            raise ValueError(f"out_dim must be at least 2 classes for classification; got {out_dim}")
        dtype = default_dtype() if dtype is None else jnp.dtype(dtype)
        encoder_key, head_key, *block_keys = jax.random.split(key, blocks + 2)
        hru_kwargs = {"step": step} if hru == "nonlinear" else {}
        self.encoder = Dense(in_dim + int(time_channel), hidden, key=encoder_key, dtype=dtype)
        self.blocks = tuple(Block(hidden, state, hru, key=k, dtype=dtype, hru_kwargs=hru_kwargs)
                            for k in block_keys)
        self.head = Dense(hidden, out_dim, key=head_key, dtype=dtype)
        self.task, self.output_step, self.time_channel = task, int(output_step), bool(time_channel)
        self.in_dim, self.out_dim, self.hru_kind = int(in_dim), int(out_dim), hru

    # --- forward ------------------------------------------------------------------------------
    def encode(self, x):
        """x (N, L, in_dim) → time-major encoder output (L, N, H)."""
        x = jnp.swapaxes(x, 0, 1)
        if self.time_channel:
            length, batch = x.shape[:2]
            t = (jnp.arange(length, dtype=x.dtype) / length)[:, None, None]
            x = jnp.concatenate([jnp.broadcast_to(t, (length, batch, 1)), x], axis=-1)
        return self.encoder(x)

    def decode(self, h):
        """Last block output (L, N, H) → logits (N, classes) or predictions (N, L // k, out_dim)."""
        if self.task == "classification":
            return self.head(jnp.mean(h, axis=0))
        kept = h[self.output_step - 1::self.output_step]
        return jnp.swapaxes(jnp.tanh(self.head(kept)), 0, 1)

    def __call__(self, x, options: CoreOptions | None = None, *, train: bool = False, key=None):
        """x (N, L, in_dim) → (outputs, norm statistics per block).

        ``train``: normalise with batch statistics (and return updated running statistics);
        ``key``: enables dropout. ``options``: how the cores are differentiated (default RHEL).
        """
        options = CoreOptions() if options is None else options
        block_keys = [None] * len(self.blocks) if key is None else jax.random.split(key, len(self.blocks))
        h = self.encode(x)
        stats = []
        for block, block_key in zip(self.blocks, block_keys):
            h, block_stats = block(h, options, train=train, key=block_key)
            stats.append(block_stats)
        return self.decode(h), tuple(stats)

    def hru_inputs(self, x, options: CoreOptions | None = None):
        """The normalised input (L, N, H) each block's HRU sees (training-mode norm, no dropout)."""
        options = CoreOptions() if options is None else options
        h = self.encode(x)
        inputs = []
        for block in self.blocks:
            inputs.append(block.norm(h, True)[0])
            h, _ = block(h, options, train=True)
        return inputs

    def with_norm_stats(self, stats):
        """A copy with every block's running statistics replaced by ``stats`` (from ``__call__``)."""
        where = lambda m: [leaf for b in m.blocks for leaf in (b.norm.running_mean, b.norm.running_var)]
        return eqx.tree_at(where, self, [s for pair in stats for s in pair])


# --- losses ---------------------------------------------------------------------------------------

def loss_from_outputs(task: str, outputs, y):
    """Cross-entropy (mean over batch; integer labels) or mean squared error."""
    if task == "classification":
        log_probs = jax.nn.log_softmax(outputs, axis=-1)
        return -jnp.mean(jnp.take_along_axis(log_probs, y[:, None].astype(jnp.int32), axis=-1))
    return jnp.mean(jnp.square(outputs - y))


# --- input validation -----------------------------------------------------------------------------

def _is_concrete(a) -> bool:
    return not isinstance(a, jax.core.Tracer)


def check_inputs(model: HSSM, x, y=None):
    """Raise ``ValueError`` naming the argument for inputs the model cannot take."""
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
    if _is_concrete(x) and not bool(jnp.all(jnp.isfinite(x))):
        bad = int(jnp.sum(~jnp.isfinite(x)))
        raise ValueError(f"x contains {bad} NaN or Inf values; clean or fill them first "
                         "(hamecho.data fills missing values when loading)")
    if y is None:
        return
    y_shape = tuple(jnp.shape(y))
    if model.task == "classification":
        if y_shape != (shape[0],):
            raise ValueError(f"y must be integer labels of shape ({shape[0]},); got shape {y_shape}")
        if not jnp.issubdtype(jnp.result_type(y), jnp.integer):
            raise ValueError(f"y must hold integer class labels; got dtype {jnp.result_type(y)}")
        if _is_concrete(y) and y_shape[0] and (int(jnp.min(y)) < 0 or int(jnp.max(y)) >= model.out_dim):
            raise ValueError(f"y has labels in [{int(jnp.min(y))}, {int(jnp.max(y))}] but the model has "
                             f"out_dim={model.out_dim} classes (allowed 0..{model.out_dim - 1})")
    else:
        expected = (shape[0], shape[1] // model.output_step, model.out_dim)
        if y_shape != expected:
            raise ValueError(f"y must have shape (batch, length // output_step, out_dim) = {expected}; "
                             f"got {y_shape}")


def core_options(algo: str = "rhel", eps: float = 0.1, **kwargs) -> CoreOptions:
    """CoreOptions (scan "auto" unless given: per backend and HRU kind); ``ValueError`` on bad values."""
    if algo not in ALGOS:
        raise ValueError(f"algo must be one of {', '.join(map(repr, ALGOS))}; got {algo!r}")
    return CoreOptions(algo=algo, eps=eps, **kwargs)


# --- public API -----------------------------------------------------------------------------------

def training_loss(model: HSSM, x, y, options: CoreOptions, key=None):
    """(loss, norm statistics) in training mode (batch-statistics norm; dropout when ``key``)."""
    outputs, stats = model(x, options, train=True, key=key)
    return loss_from_outputs(model.task, outputs, y), stats


@eqx.filter_jit
def _value_and_grad(model, x, y, options):
    loss_fn = lambda m: training_loss(m, x, y, options)[0]
    return eqx.filter_value_and_grad(loss_fn)(model)


def value_and_grad(model: HSSM, x, y, *, algo: str = "rhel", eps: float = 0.1, **options):
    """Training loss and its gradient with respect to the model, deterministically (no dropout).

    x (batch, L, in_dim); y integer labels (batch,) or targets (batch, L // output_step, out_dim).
    algo "rhel" (echo gradients for the Hamiltonian cores) or "bptt" (autodiff). Extra options go
    to ``CoreOptions`` (estimator, scan, difference, integrator, fraction_bits). ``grads`` has the structure
    ``eqx.filter_grad`` gives for the model (running norm statistics get zero gradient).
    """
    check_inputs(model, x, y)
    return _value_and_grad(model, x, y, core_options(algo, eps, **options))


@eqx.filter_jit
def _predict(model, x):
    return model(x, CoreOptions(algo="bptt"), train=False)[0]


def predict(model: HSSM, x):
    """Inference-mode outputs: logits (batch, out_dim) or predictions (batch, L // k, out_dim)."""
    check_inputs(model, x)
    return _predict(model, x)


def cast(model, dtype):
    """A copy of ``model`` with every floating-point array cast to ``dtype``."""
    return jax.tree_util.tree_map(
        lambda a: a.astype(dtype) if eqx.is_array(a) and jnp.issubdtype(a.dtype, jnp.floating) else a, model)


def count_parameters(model) -> int:
    return int(sum(math.prod(a.shape) for a in jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_array))))
