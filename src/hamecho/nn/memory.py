"""Memory strategies: how an HSSM block trades compute for memory. Same outputs and gradients.

    memory=None               autodiff keeps every activation of every block
    memory=RecomputeBlocks()  a block keeps only its input (H numbers per step and sample) and is
                              recomputed when its cotangent arrives: one more forward pass per block
    memory=TimeChunks(1024)   a block runs as a scan over time chunks, each recomputed in the backward
                              pass; it keeps its input and each chunk's starting HRU state
    memory=Streaming(256)     the whole stack runs over time chunks, forward and backward; nothing of
                              length L is kept but the input (RHEL, norm="layer"; ``hamecho.nn.streaming``)

Each strategy is a small hashable value under ``hamecho.core.memory.AbstractMemory`` (the base and its
flags live in ``core/`` beside the other two families) with one method,
``run_block(block, x, choices, train=..., key=...)``, that returns what ``Block.forward`` returns.
Which strategies combine with which gradient methods and integrators is checked in
``hamecho.core.choices.check_compatible`` (it reads ``carries_state``).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from ..core.choices import compute_dtype, integrator_for
from ..core.engine import run_core
from ..core.gradients import check_positive_int
from ..core.memory import AbstractMemory


@dataclass(frozen=True)
class RecomputeBlocks(AbstractMemory):
    """Keep only each block's input; recompute the block (feed-forward parts and core forward) in the
    backward pass (:func:`recompute_in_backward`). Costs one more forward pass per block."""

    def run_block(self, block, x, choices, *, train: bool, key=None):
        params, static = eqx.partition(block, eqx.is_array)
        run = lambda params, x, key: eqx.combine(params, static).forward(x, choices, train=train, key=key)
        return recompute_in_backward(run)(params, x, key)


@dataclass(frozen=True)
class TimeChunks(AbstractMemory):
    """Run every block over time chunks of about ``size`` steps, each recomputed in the backward pass
    (:func:`forward_in_chunks`): a block keeps its input and each chunk's starting state, not its
    activations. Dropout masks are drawn per chunk (same distribution, other draws than ``None``)."""

    carries_state: ClassVar[bool] = True
    size: int = 1024

    def __post_init__(self):
        check_positive_int("TimeChunks size", self.size, " (time steps per chunk)")

    def run_block(self, block, x, choices, *, train: bool, key=None):
        return forward_in_chunks(block, x, choices, self.size, train=train, key=key)


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


def forward_in_chunks(block, x, choices, chunk: int, *, train: bool, key=None):
    """``block.forward`` as a scan over time chunks of about ``chunk`` steps, each under
    ``jax.checkpoint``: same outputs, statistics and gradients (without dropout; with it, other draws).

    Everything in a block is local in time except the norm's statistics (over all of (L, N): computed
    first, from the whole input) and the HRU's state (carried from chunk to chunk by a core that starts
    from a given state). Dropout masks are drawn per chunk from ``fold_in(key, chunk index)``, so they
    are recomputed, never stored. Under autodiff the block keeps its input x (read by chunk index, never
    copied per chunk) and the HRU state at each chunk's start; each chunk's activations are recomputed
    during the backward pass, one chunk at a time. With BPTT the core is differentiated inside the
    recomputed chunk; with RHEL each chunk's echo receives the next chunk's echo state as its final
    state's cotangent (exact for an affine HRU; O(ε²) for a nonlinear one, as the echo's mean restarts
    from the forward state at each chunk boundary).
    """
    length, batch = x.shape[:2]
    n_chunks, size, _ = chunk_plan(length, chunk, padded=True)
    mean, var, stats = block.norm.statistics(x, train)
    hru = block.hru
    theta = hru.core_parameters()
    integrator = integrator_for(hru.hamiltonian, choices, initial_state=True)
    zeros = jnp.zeros((batch, hru.state_size), compute_dtype(integrator.dtype, x.dtype, who=integrator.label()))
    chunks = _pad_time(x, n_chunks * size).reshape((n_chunks, size) + x.shape[1:])

    @partial(jax.checkpoint, prevent_cse=False)
    def run_chunk(state, index):
        x_chunk = chunks[index]  # read from the whole input (a scan input would be stored again)
        normed = block.norm.normalise(x_chunk, mean, var)
        positions, state = run_core(hru.hamiltonian, choices, theta, hru.drives(normed), state)
        if block.time_local:  # per-step masks at the chunk's own steps: the whole sequence's draws
            keep = block.dropout_masks(key, x_chunk.shape, start=index * size)
        else:
            keep = block.dropout_masks(None if key is None else jax.random.fold_in(key, index), x_chunk.shape)
        return state, block.after_hru(x_chunk, hru.readout(positions, normed), keep)

    _, out = jax.lax.scan(run_chunk, (zeros, zeros), jnp.arange(n_chunks))
    return out.reshape((n_chunks * size,) + out.shape[2:])[:length], stats


def chunk_plan(length: int, chunk: int, *, padded: bool = False) -> tuple[int, int, int]:
    """How ``length`` steps are cut into chunks of at most ``chunk`` steps: (n_chunks, size, rest), that is a
    first chunk of ``rest`` steps (none when 0), then ``n_chunks`` chunks of ``size`` steps.

    A divisor of ``length`` between chunk/2 and chunk where there is one (rest 0: no padding, no copy of
    the sequence, one chunk function to compile). Otherwise, ``padded`` (``TimeChunks``: a block may run past
    the end, the padded steps come after every output): the fewest chunks with the least padding,
    n_chunks · size ≥ length and rest 0; not ``padded`` (``Streaming``: the cores' final states must be the
    sequence's own, as the backward pass starts from them): ``length mod chunk`` steps first, then
    ⌊length/chunk⌋ chunks of ``chunk``.
    """
    chunk = max(1, min(chunk, length))
    size = next((s for s in range(chunk, (chunk + 1) // 2 - 1, -1) if length % s == 0), None)
    if size is not None:
        return length // size, size, 0
    if padded:
        n_chunks = -(-length // chunk)
        return n_chunks, -(-length // n_chunks), 0
    n_chunks, rest = divmod(length, chunk)
    return n_chunks, chunk, rest


def _pad_time(a, length: int):
    """a (L, ...) padded with zeros to ``length`` steps (after the end: they cannot change earlier steps)."""
    pad = length - a.shape[0]
    return jnp.pad(a, ((0, pad),) + ((0, 0),) * (a.ndim - 1)) if pad else a
