"""Streaming: the whole HSSM stack trained by RHEL with memory flat in the sequence length (issue #14).

    model = hamecho.HSSM(..., norm="layer")
    loss, grads = hamecho.value_and_grad(model, x, y, memory=hamecho.Streaming(chunk=256))

Every HRU core runs backwards exactly (spec §2), so a block's positions — and from them everything
the block computes — can be rebuilt during the backward pass instead of being stored. With a norm that
is local in time (``norm="layer"``) every block is a function of its input at the same step and of
its HRU state, so the whole stack streams over time:

- **Forward**: one pass over time in chunks of ``chunk`` steps, all blocks bottom-up per chunk. Kept:
  each block's final HRU state, what the head accumulates (the sum over time for classification, the
  outputs at the kept steps for regression), and the raw input ``x`` (read chunk by chunk in place).
- **Backward** (one custom VJP around the stack): a reverse scan over the chunks. Per chunk,
  (1) bottom-up, each block's positions over the chunk are rebuilt by the free echo (ε = 0: flip the
  momentum, run the same leapfrog with the drives reversed) from the state carried at the chunk's end,
  and its feed-forward parts (norm, B, C, D, GELU, dropout, GLU, residual) are recomputed from them and
  from the block below; (2) top-down, each block's ±ε echo (mean and half-difference) resumes over the
  chunk, nudged by the positions' cotangents that the local VJPs of the feed-forward parts hand down
  from the block above, and every parameter gradient is summed in the carry. Carried from chunk to
  chunk: each block's free-echo state and ±ε echo, and the gradient sums.
- **Dropout**: masks are drawn per step from ``fold_in(key, step)`` (as a ``norm="layer"`` model always
  draws them), so the rebuild redraws them identically.

Exactness: the echo over consecutive chunks is the whole-sequence echo step for step
(``Leapfrog.echo_stretch``), so the gradients are RHEL's (equal to BPTT's for the linear HRU, O(ε²)
from them otherwise) up to the rebuild's rounding; with ``FixedPointLeapfrog`` the rebuild is
bit-exact at any length (:func:`stream_retrace_error`). RHEL only: BPTT would need the activations
this strategy never keeps (``hamecho.core.choices.check_compatible`` says so, and why norm "batch"
cannot stream).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from ..core.choices import Choices, check_compatible, compute_dtype, difference_rule, integrator_for
from ..core.engine import relative_retrace_error, to_compute_dtype
from ..core.gradients import RHEL, check_positive_int
from ..core.memory import AbstractMemory
from .memory import chunk_plan

DEFAULT_CHUNK = 512


@dataclass(frozen=True)
class Streaming(AbstractMemory):
    """Run the whole stack over time chunks of ``chunk`` steps, forward and backward (module docstring):
    nothing of length L is kept but the input. RHEL only, ``HSSM(norm="layer")`` only; integrator
    ``Leapfrog`` (the default) or ``FixedPointLeapfrog``.

    Chunks (``hamecho.nn.memory.chunk_plan``, unpadded): a divisor of L between chunk/2 and chunk steps
    where there is one; else the first ``L mod chunk`` steps form one shorter chunk (no padding), then
    ⌊L/chunk⌋ chunks of ``chunk`` steps. Memory per chunk ~ chunk · batch · hidden numbers per block; the
    compute is that of plain RHEL plus one more forward pass (the rebuild), on a working set that stays in
    cache.
    """

    whole_stack: ClassVar[bool] = True
    needs_rhel: ClassVar[bool] = True
    chunk: int = DEFAULT_CHUNK

    def __post_init__(self):
        check_positive_int("chunk", self.chunk, " (the Streaming chunk, in time steps)")

    def run_stack(self, model, x, choices, *, train: bool, key=None):
        """x (N, L, in_dim) → (outputs, one empty statistics tuple per block), as ``HSSM.apply`` (which has
        checked the model's norm)."""
        return streamed_stack(model, x, choices, self.chunk, train=train, key=key), tuple(() for _ in model.blocks)


# --- the stack, chunk by chunk ----------------------------------------------------------------------

class _Stack:
    """One streamed call: the model (its arrays may be tracers), the input and every static choice."""

    def __init__(self, model, x, choices, chunk: int, train: bool, key):
        self.model, self.x, self.train = model, x, train
        self.length, self.batch = x.shape[1], x.shape[0]
        self.n_full, self.size, self.rest = chunk_plan(self.length, chunk)  # unpadded: no step past the end
        self.dtype = model.encoder.weight.dtype
        self.rhel = choices.gradient if isinstance(choices.gradient, RHEL) else RHEL()
        self.block_keys = [None] * len(model.blocks) if key is None else list(jax.random.split(key, len(model.blocks)))
        self.integrators, self.thetas, self.rules = [], [], []
        for block in model.blocks:
            ham = block.hru.hamiltonian
            integrator = integrator_for(ham, choices)
            probe = jnp.zeros((1, 1, block.hru.state_size), self.dtype)
            theta, probe = to_compute_dtype(integrator, block.hru.core_parameters(), probe)
            self.integrators.append(integrator)
            self.thetas.append(theta)
            self.rules.append(difference_rule(self.rhel))
        self.core_dtype = compute_dtype(self.integrators[0].dtype, self.dtype, who=self.integrators[0].label())
        # gradient and head sums in the cores' precision when it is wider (float64 cores, float32 model)
        self.acc_dtype = jnp.promote_types(self.dtype, self.core_dtype)

    # the pieces of a block, local in time
    def x_chunk(self, start, size):
        """(size, N, in_dim), read from x (N, L, in_dim) in place."""
        return jnp.swapaxes(jax.lax.dynamic_slice_in_dim(self.x, start, size, axis=1), 0, 1)

    def normed(self, block, h):
        return block.norm(h, self.train)[0]

    @staticmethod
    def drives(block, u):
        return block.hru.drives(u)

    @staticmethod
    def after_core(block, h, u, positions, keep):
        """Everything of a block after its core: readout C·φ + D⊙u, GELU, dropout, GLU, dropout, residual."""
        return block.after_hru(h, block.hru.readout(positions, u), keep)

    def keep_masks(self, b, start, size):
        shape = (size, self.batch, self.model.encoder.weight.shape[0])
        return self.model.blocks[b].dropout_masks(self.block_keys[b], shape, start)

    def initial_states(self):
        """The zero state of every core, in the dtype its integrator carries (float or int64)."""
        states = []
        for b, block in enumerate(self.model.blocks):
            drives = jax.ShapeDtypeStruct((1, self.batch, block.hru.state_size), self.core_dtype)
            shape = jax.eval_shape(lambda d, b=b, block=block: self.integrators[b].forward(
                block.hru.hamiltonian, self.thetas[b], d)[1], drives)
            states.append(tuple(jnp.zeros(s.shape, s.dtype) for s in shape))
        return states

    # the head: the model's pieces (``HSSM.head_output``, ``HSSM.output_slots``), fed chunk by chunk
    def kept_steps(self, start, size):
        """For regression: which steps of the chunk the head reads, and where their outputs go (clipped to
        the outputs' range where not kept)."""
        kept, slots = self.model.output_slots(start + jnp.arange(size))
        return kept, jnp.clip(slots, 0, self.length // self.model.output_step - 1)

    def head_output(self, head, h):
        """``HSSM.head_output`` with the head's arrays as an argument (for their VJP)."""
        return eqx.tree_at(lambda m: m.head, self.model, head).head_output(h)

    def initial_head(self):
        """What the head accumulates: classification the sum over time (N, H); regression the outputs
        (L // k, N, out_dim)."""
        model = self.model
        if model.task == "classification":
            return jnp.zeros((self.batch, model.encoder.weight.shape[0]), self.acc_dtype)
        return jnp.zeros((self.length // model.output_step, self.batch, model.out_dim), self.dtype)

    def accumulate_head(self, head_acc, top, start, size):
        if self.model.task == "classification":
            return head_acc + jnp.sum(top.astype(self.acc_dtype), axis=0)
        kept, where = self.kept_steps(start, size)
        values = self.model.head_output(top)
        where = jnp.where(kept, where, head_acc.shape[0])  # out of range: dropped
        return head_acc.at[where].set(values, mode="drop")

    def outputs(self, head_acc):
        """The model's outputs from the head's accumulator (``HSSM.decode``'s)."""
        if self.model.task == "classification":
            return self.model.head_output((head_acc / self.length).astype(self.dtype))
        return jnp.swapaxes(head_acc, 0, 1)

    # forward
    def forward_chunk(self, states, head_acc, start, size):
        h = self.model.encoder(self.x_chunk(start, size))
        new_states = []
        for b, block in enumerate(self.model.blocks):
            u = self.normed(block, h)
            drives = self.drives(block, u)
            with jax.named_scope("core_forward"):  # named scopes: docs/performance.md (no effect on the arithmetic)
                positions, state = self.integrators[b].forward(block.hru.hamiltonian, self.thetas[b],
                                                               drives.astype(self.core_dtype), states[b])
            h = self.after_core(block, h, u, positions.astype(drives.dtype), self.keep_masks(b, start, size))
            new_states.append(state)
        return new_states, self.accumulate_head(head_acc, h, start, size)

    def forward(self):
        """(outputs, final state of every core, head accumulator)."""
        states, head_acc = self.initial_states(), self.initial_head()
        if self.rest:
            states, head_acc = self.forward_chunk(states, head_acc, 0, self.rest)

        def body(carry, index):
            return self.forward_chunk(*carry, self.rest + index * self.size, self.size), None

        (states, head_acc), _ = jax.lax.scan(body, (states, head_acc), jnp.arange(self.n_full))
        return self.outputs(head_acc), states, head_acc

    # backward
    def rebuild_chunk(self, free, start, size, with_vjps: bool):
        """Bottom-up: every block's positions over the chunk from its carried state, and what the
        top-down pass needs (the local VJPs); returns (start states, per-block pieces, top output, encoder VJP)."""
        x_chunk = self.x_chunk(start, size)
        if with_vjps:
            h, encoder_vjp = jax.vjp(lambda enc, xc: enc(xc), self.model.encoder, x_chunk)
        else:
            h, encoder_vjp = self.model.encoder(x_chunk), None
        start_states, pieces = [], []
        for b, block in enumerate(self.model.blocks):
            ham = block.hru.hamiltonian
            keep = self.keep_masks(b, start, size)
            after = lambda blk, hh, uu, pos, keep=keep: self.after_core(blk, hh, uu, pos, keep)
            if with_vjps:  # each piece once, its VJP kept for the top-down pass
                u, norm_vjp = jax.vjp(lambda hh, block=block: self.normed(block, hh), h)
                drives, drives_vjp = jax.vjp(self.drives, block, u)
            else:
                u = self.normed(block, h)
                drives, norm_vjp, drives_vjp = self.drives(block, u), None, None
            drives_c = drives.astype(self.core_dtype)
            with jax.named_scope("core_rebuild"):
                positions, state = self.integrators[b].rebuild(ham, self.thetas[b], drives_c, free[b])
            positions = positions.astype(drives.dtype)
            if with_vjps:
                h, after_vjp = jax.vjp(after, block, h, u, positions)
            else:
                h, after_vjp = after(block, h, u, positions), None
            start_states.append(state)
            pieces.append((norm_vjp, drives_vjp, after_vjp, drives_c, drives.dtype))
        return start_states, pieces, h, encoder_vjp

    def backward_chunk(self, carry, start, size, top_cotangent):
        free, echoes, thetas, grads, x_grad = carry
        start_states, pieces, top, encoder_vjp = self.rebuild_chunk(free, start, size, with_vjps=True)
        g, head_grad = top_cotangent(top, start, size)
        block_grads, new_echoes, new_thetas = list(grads["blocks"]), list(echoes), list(thetas)
        for b in reversed(range(len(self.model.blocks))):
            block = self.model.blocks[b]
            norm_vjp, drives_vjp, after_vjp, drives_c, drives_dtype = pieces[b]
            g_after, g, g_u, g_positions = after_vjp(g)
            with jax.named_scope("core_echo"):
                new_echoes[b], new_thetas[b], g_drives = self.integrators[b].echo_stretch(
                    block.hru.hamiltonian, self.rhel, self.rules[b], self.thetas[b], drives_c, echoes[b],
                    g_positions.astype(self.core_dtype), thetas[b])
            g_drives_block, g_u_drives = drives_vjp(g_drives.astype(drives_dtype))
            (g_below,) = norm_vjp(g_u + g_u_drives)
            block_grads[b] = _add(block_grads[b], g_after, g_drives_block)
            g = g + g_below
        g_encoder, g_x = encoder_vjp(g)
        grads = {"encoder": _add(grads["encoder"], g_encoder), "blocks": tuple(block_grads),
                 "head": grads["head"] if head_grad is None else _add(grads["head"], head_grad)}
        if x_grad is not None:
            x_grad = jax.lax.dynamic_update_slice_in_dim(x_grad, jnp.swapaxes(g_x, 0, 1).astype(x_grad.dtype),
                                                         start, axis=1)
        return start_states, new_echoes, new_thetas, grads, x_grad

    def backward(self, final_states, head_acc, cotangent, x_needed: bool):
        """(gradient of the model's arrays, of x or None)."""
        model = self.model
        wide = lambda a: jnp.zeros(a.shape, jnp.promote_types(a.dtype, self.acc_dtype))
        zeros = lambda tree: jax.tree_util.tree_map(wide, tree)
        if model.task == "classification":
            mean = (head_acc / self.length).astype(self.dtype)
            _, head_vjp = jax.vjp(self.head_output, model.head, mean)
            head_grad, g_mean = head_vjp(cotangent)
            per_step = g_mean / self.length

            def top_cotangent(top, start, size):
                return jnp.broadcast_to(per_step, top.shape), None
        else:
            head_grad = zeros(model.head)
            cotangent_t = jnp.swapaxes(cotangent, 0, 1)

            def top_cotangent(top, start, size):
                kept, where = self.kept_steps(start, size)
                g_out = jnp.where(kept[:, None, None], cotangent_t[where], jnp.zeros_like(cotangent_t[:1]))
                _, vjp = jax.vjp(self.head_output, model.head, top)
                return vjp(g_out)[::-1]

        echoes = [integ.echo_start(self.rhel, state) for integ, state in zip(self.integrators, final_states)]
        thetas = [jax.tree_util.tree_map(jnp.zeros_like, theta) for theta in self.thetas]
        grads = {"encoder": zeros(model.encoder), "blocks": tuple(zeros(b) for b in model.blocks),
                 "head": _add(zeros(model.head), head_grad)}
        x_grad = jnp.zeros(self.x.shape, self.x.dtype) if x_needed else None
        carry = (list(final_states), echoes, thetas, grads, x_grad)

        def body(carry, index):
            return self.backward_chunk(carry, self.rest + index * self.size, self.size, top_cotangent), None

        carry, _ = jax.lax.scan(body, carry, jnp.arange(self.n_full), reverse=True)
        if self.rest:
            carry = self.backward_chunk(carry, 0, self.rest, top_cotangent)
        _, _, thetas, grads, x_grad = carry
        block_grads = []
        for b, block in enumerate(model.blocks):
            core_params, core_vjp = jax.vjp(lambda hru: hru.core_parameters(), block.hru)
            theta_grad = self.integrators[b].echo_gradient(self.rhel, thetas[b])
            theta_grad = jax.tree_util.tree_map(lambda g, t: g.astype(t.dtype), theta_grad, core_params)
            (hru_grad,) = core_vjp(theta_grad)
            block_grads.append(_add(grads["blocks"][b], eqx.tree_at(lambda blk: blk.hru, zeros(block), hru_grad)))
        grads = eqx.tree_at(lambda m: (m.encoder, m.blocks, m.head), model,
                            (grads["encoder"], tuple(block_grads), grads["head"]))
        grads = jax.tree_util.tree_map(lambda g, a: g.astype(a.dtype), grads, model)
        return grads, x_grad

    def retrace(self, final_states):
        """The rebuild alone, over every chunk back to the start: each core's state where it ends."""
        def body(free, index):
            return self.rebuild_chunk(free, self.rest + index * self.size, self.size, with_vjps=False)[0], None

        free, _ = jax.lax.scan(body, list(final_states), jnp.arange(self.n_full), reverse=True)
        if self.rest:
            free = self.rebuild_chunk(free, 0, self.rest, with_vjps=False)[0]
        return free


def _add(total, *terms):
    """total + terms (pytrees of total's structure; a term's None leaves count as zero), in total's dtypes."""
    for term in terms:
        total = jax.tree_util.tree_map(lambda a, t: a if t is None else a + t.astype(a.dtype), total, term,
                                       is_leaf=lambda t: t is None)
    return total


def _value(primal):
    """Unwrap ``CustomVJPPrimal`` leaves (the custom VJP runs with symbolic zeros)."""
    return jax.tree_util.tree_map(lambda p: p.value, primal,
                                  is_leaf=lambda p: isinstance(p, jax.custom_derivatives.CustomVJPPrimal))


def streamed_stack(model, x, choices, chunk: int, *, train: bool, key=None):
    """The HSSM's outputs for x (N, L, in_dim) under one custom VJP whose backward pass streams (module doc).

    Differentiable with respect to the model's arrays and x; the dropout key gets no cotangent.
    """
    params, static = eqx.partition(model, eqx.is_array)
    stack = lambda params, x, key: _Stack(eqx.combine(params, static), x, choices, chunk, train, key)

    @jax.custom_vjp
    def streamed(params, x, key):
        return stack(params, x, key).forward()[0]

    def forward(params, x, key):
        x_needed = x.perturbed
        params, x, key = _value(params), x.value, _value(key)
        outputs, final_states, head_acc = stack(params, x, key).forward()
        # Residuals: the arrays, x, the key, each core's final state, the head's accumulator. Nothing of
        # length L but x (and, for regression, nothing beyond the outputs' own size).
        return outputs, (params, x, key, final_states, head_acc, () if x_needed else None)

    def backward(residuals, cotangent):
        params, x, key, final_states, head_acc, x_needed = residuals
        if isinstance(cotangent, jax.custom_derivatives.SymbolicZero):
            cotangent = jnp.zeros(cotangent.shape, cotangent.dtype)
        grads, x_grad = stack(params, x, key).backward(final_states, head_acc, cotangent, x_needed is not None)
        return grads, x_grad, None

    streamed.defvjp(forward, backward, symbolic_zeros=True)
    return streamed(params, x, key)


def stream_retrace_error(model, x, *, integrator=None, chunk: int = DEFAULT_CHUNK, key=None) -> jax.Array:
    """How far the streamed rebuild of every block misses the zero initial state after running back over
    all chunks: one relative error per block (``hamecho.core.engine.relative_retrace_error``).

    Rounding only (the upstream blocks' rebuilt outputs drive each block's rebuild); exactly 0.0 for every
    block with ``FixedPointLeapfrog``, however long the sequence.
    """
    choices = Choices(gradient=RHEL(), integrator=integrator, memory=Streaming(chunk))
    check_compatible(choices.gradient, choices.integrator, choices.memory, norm=model.norm)
    return _retrace_errors(model, x, choices, key)


@eqx.filter_jit
def _retrace_errors(model, x, choices, key):
    run = _Stack(model, x, choices, choices.memory.chunk, True, key)
    _, final_states, _ = run.forward()
    starts = run.retrace(final_states)
    errors = []
    for integrator, start, final in zip(run.integrators, starts, final_states):
        start, final = integrator.state_as_float(start), integrator.state_as_float(final)
        zero = jnp.zeros_like(start[0])
        errors.append(relative_retrace_error((start[0], -start[1]), (zero, zero), final))
    return jnp.stack(errors)
