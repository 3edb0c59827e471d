"""Integrators: the leapfrog step, its sequential scan, and the RHEL echo that runs on it.

Every integrator is a small hashable value under :class:`AbstractIntegrator` that knows two things:

    forward(ham, theta, drives (L, N, U), initial_state)  -> positions (L, N, P), final state
    echo(ham, rhel, rule, theta, drives, final_state, cotangents (L, N, P), final_state_cotangent)
                                                          -> EchoResult

``theta`` and ``drives`` arrive in the integrator's compute dtype (``hamecho.core.choices.compute_dtype``).
This module holds the base class and :class:`Leapfrog` (sequential scan, floating point); the parallel
scan is ``affine.AffineLeapfrog`` and the exactly reversible integer grid ``fixed_point.FixedPointLeapfrog``.
Shapes: position and momentum (N, P) with N any flattened batch; drive (N, U).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from .gradients import (
    RHEL,
    check_one_of,
    estimator_scale,
    half_difference,
    half_difference_span,
    mean_and_half_difference,
    nudges_after_each_step,
    per_sample_sums,
    step_energy_gradients,
)
from .hamiltonians import SeparableHamiltonian, batched_force, batched_velocity
from .tracing import trace_once

# The precision a floating-point integrator runs in: "auto" (float64 under JAX's x64 mode, else the
# input's), "input" (the input's dtype) or "float64" (needs x64). Resolved by ``choices.compute_dtype``.
CORE_DTYPES = ("auto", "input", "float64")


class EchoResult(NamedTuple):
    """What an echo returns.

    grad_theta: ∂L/∂θ (theta's structure); grad_drives: ∂L/∂drives (L, N, U);
    end_state: (φ, π) where the echo ends (mean of the two echoes; the +ε echo's on the fixed-point
    grid), each (N, P); initial_cotangent: (∂L/∂φ_initial, ∂L/∂π_initial), or None where not computed.
    """

    grad_theta: Any
    grad_drives: jax.Array
    end_state: tuple
    initial_cotangent: tuple | None


@dataclass(frozen=True)
class AbstractIntegrator:
    """Base class of the integrators (hashable values, static under ``jax.jit``).

    Class attributes say what the integrator supports; ``choices.check_compatible`` reads them:
    ``differentiable`` (BPTT can differentiate it), ``starts_from_state`` (it runs from a given initial
    state and hands the echo across time chunks), ``streams`` (it implements ``rebuild``, ``echo_start``,
    ``echo_stretch`` and ``echo_gradient`` for ``hamecho.Streaming``), ``parallel`` (an associative scan),
    ``per_hamiltonian`` (a choice that :meth:`resolve` turns into a concrete integrator per Hamiltonian,
    ``choices.AutoLeapfrog``), ``measures_states`` (a device that reports the states it measured,
    ``forward_measured``, and names its twin, ``twin``: what ``PhysicsAware`` needs; ``hamecho.physical``).
    ``dtype`` is the precision choice (one of ``CORE_DTYPES``; a field where the
    user chooses it).
    """

    differentiable: ClassVar[bool] = True
    not_differentiable_because: ClassVar[str] = ""
    starts_from_state: ClassVar[bool] = False
    streams: ClassVar[bool] = False
    parallel: ClassVar[bool] = False
    per_hamiltonian: ClassVar[bool] = False
    measures_states: ClassVar[bool] = False

    def label(self) -> str:
        """How messages name this integrator."""
        return repr(self)

    def resolve(self, ham: SeparableHamiltonian, gradient, memory=None, *, initial_state: bool = False):
        """The integrator a core of ``ham`` runs with: this one (``per_hamiltonian`` ones choose)."""
        return self

    def forward(self, ham: SeparableHamiltonian, theta, drives, initial_state=None):
        """Positions (L, N, P) and the final state, from ``initial_state`` (default: zero)."""
        raise NotImplementedError

    def forward_checkpointed(self, ham: SeparableHamiltonian, theta, drives, every: int):
        """Positions (L, N, P) from the zero state whose autodiff keeps the state every ``every`` steps only:
        how ``BPTT(checkpoint_every=every)`` runs (``engine.run_core``). Needed where BPTT can run a
        sequential scan (``differentiable`` and not ``parallel``)."""
        raise NotImplementedError(f"{type(self).__name__} does not run BPTT with gradient checkpointing")

    def echo(self, ham: SeparableHamiltonian, rhel: RHEL, rule: str, theta, drives, final_state, cotangents,
             final_state_cotangent=None) -> EchoResult:
        raise NotImplementedError

    def state_as_float(self, state):
        """A state the integrator carries, as floating-point (φ, π) (identity except on a grid)."""
        return state


def drift_kick_drift(position, momentum, velocity, force, step):
    """The leapfrog update shared by every leapfrog here (HRUs and ``hamecho.continuous``), spec §2:

        φ½ = φ + (δ/2)·v(π);   π' = π + δ·F(φ½);   φ' = φ½ + (δ/2)·v(π')

    ``velocity`` = ∂T/∂π and ``force`` = −∂V/∂φ as functions of one argument. Returns (φ', π', φ½).
    """
    half_position = position + 0.5 * step * velocity(momentum)
    new_momentum = momentum + step * force(half_position)
    new_position = half_position + 0.5 * step * velocity(new_momentum)
    return new_position, new_momentum, half_position


def leapfrog_step(ham: SeparableHamiltonian, theta, position, momentum, drive):
    """One HRU step (kick at the HALF-STEP position). Returns ``(position', momentum', half_position)``.

    Exactly reversible: ``leapfrog_step(φ', −π')`` returns ``(φ, −π)`` in exact arithmetic.
    """
    return drift_kick_drift(position, momentum, lambda p: batched_velocity(ham, theta, p),
                            lambda q: batched_force(ham, theta, q, drive), ham.step_size(theta))


def inverse_leapfrog_step(ham: SeparableHamiltonian, theta, position, momentum, drive):
    """Undo ``leapfrog_step``: flip the momentum, step with the same input, flip back."""
    previous_position, flipped_momentum, _ = leapfrog_step(ham, theta, position, -momentum, drive)
    return previous_position, -flipped_momentum


def run_leapfrog(ham: SeparableHamiltonian, theta, drives, position, momentum, *, reverse: bool = False):
    """Sequential scan over time from (φ, π), each (N, P); drives (L, N, U).

    Returns (positions (L, N, P), (final position, final momentum)). ``reverse``: take the drives from
    the last to the first (the free echo, :func:`rebuild_leapfrog`); positions[k] is then the position
    after the step with drives[k]. With ``per_sample_sums()`` every sample steps with its own copy of θ,
    so that BPTT's derivative sums θ's cotangent over the batch once, after the reverse scan.
    """
    return _leapfrog_scan(ham, reverse, theta, drives, position, momentum)


def _scan_leapfrog(ham: SeparableHamiltonian, reverse: bool, theta, drives, position, momentum):
    if per_sample_sums():
        copies = jax.tree_util.tree_map(lambda t: jnp.broadcast_to(t, (drives.shape[1],) + jnp.shape(t)), theta)
        one = lambda th, q, p, u: drift_kick_drift(q, p, lambda p_: ham.velocity(th, p_),
                                                    lambda q_: ham.force(th, q_, u), ham.step_size(th))[:2]
        step = jax.vmap(one)

        def body(state, drive):
            new_position, new_momentum = step(copies, *state, drive)
            return (new_position, new_momentum), new_position
    else:
        def body(state, drive):
            new_position, new_momentum, _ = leapfrog_step(ham, theta, *state, drive)
            return (new_position, new_momentum), new_position

    (position, momentum), positions = jax.lax.scan(body, (position, momentum), drives, reverse=reverse)
    return positions, (position, momentum)


def rebuilt_positions(previous, final_position):
    """Positions φ_0..φ_{L−1} of a stretch from a free echo's φ_{−1}..φ_{L−2} and the final position."""
    return jnp.concatenate([previous[1:], final_position[None]], axis=0)


def rebuild_leapfrog(ham: SeparableHamiltonian, theta, drives, final_state):
    """The free echo (ε = 0): the positions (L, N, P) of the forward pass that ended in ``final_state``
    (φ, π) driven by ``drives`` (L, N, U), and the state it started from.

    Flip the momentum, run the same leapfrog with the drives reversed, flip back: exact in exact
    arithmetic (spec §2), rounding only in floating point.
    """
    position, momentum = final_state
    previous, (start_position, start_momentum) = run_leapfrog(ham, theta, drives, position, -momentum, reverse=True)
    return rebuilt_positions(previous, position), (start_position, -start_momentum)


def run_leapfrog_checkpointed(ham: SeparableHamiltonian, theta, drives, position, momentum, chunk: int):
    """``run_leapfrog`` whose reverse-mode derivative stores only the state every ``chunk`` steps.

    The scan runs over chunks of ``chunk`` steps, each chunk under ``jax.checkpoint``: autodiff keeps
    the chunk-boundary states and recomputes each chunk's steps during the backward pass. The drives
    are padded with zeros to a whole number of chunks; the padded steps come after every returned
    position, so they change nothing returned. Returns (positions (L, N, P), None): no final state.
    """
    length = drives.shape[0]
    n_chunks = -(-length // chunk)
    padded = jnp.concatenate([drives, jnp.zeros((n_chunks * chunk - length,) + drives.shape[1:], drives.dtype)])

    @jax.checkpoint
    def run_chunk(state, chunk_drives):
        positions, state = run_leapfrog(ham, theta, chunk_drives, *state)
        return state, positions

    def body(state, chunk_drives):
        return run_chunk(state, chunk_drives)

    _, positions = jax.lax.scan(body, (position, momentum), padded.reshape((n_chunks, chunk) + drives.shape[1:]))
    positions = positions.reshape((n_chunks * chunk,) + positions.shape[2:])[:length]
    return positions, None


def state_size(ham: SeparableHamiltonian, theta, drives) -> int:
    """P, the number of oscillator channels, from the step size or the energies' shapes."""
    step_shape = jnp.shape(ham.step_size(theta))
    if step_shape:
        return step_shape[-1]
    # Scalar step: the state size is the force's size for one sample.
    probe = jax.eval_shape(lambda u: ham.potential(theta, jnp.zeros(u.shape[-1:], u.dtype), u), drives[0, 0])
    if probe.shape:
        return probe.shape[-1]
    raise ValueError(f"cannot infer the state size of Hamiltonian {ham.name!r}: give it a per-channel "
                     "step size or per-channel energies")


def zero_state(ham: SeparableHamiltonian, theta, drives, dtype=None):
    """The zero initial state (φ₋₁, π₋₁), each (N, P)."""
    zeros = jnp.zeros((drives.shape[1], state_size(ham, theta, drives)), drives.dtype if dtype is None else dtype)
    return zeros, zeros


@dataclass(frozen=True)
class Leapfrog(AbstractIntegrator):
    """The leapfrog (drift–kick–drift, kick at the half-step position) as a sequential scan.

    dtype: the precision the core integrates in: ``"auto"`` (float64 when JAX's x64 mode is on, so a
    float32 model gets float64 cores; else the input's), ``"input"`` or ``"float64"``. Works for every
    separable Hamiltonian, starts from any state (time chunks), and BPTT can differentiate it.
    """

    starts_from_state: ClassVar[bool] = True
    streams: ClassVar[bool] = True
    dtype: str = "auto"

    def __post_init__(self):
        check_one_of("dtype", self.dtype, CORE_DTYPES)

    def forward(self, ham, theta, drives, initial_state=None):
        """Positions (L, N, P) and final state (φ, π) from ``initial_state`` (default: zero)."""
        if initial_state is None:
            initial_state = zero_state(ham, theta, drives)
        else:
            initial_state = tuple(s.astype(drives.dtype) for s in initial_state)
        return run_leapfrog(ham, theta, drives, *initial_state)

    def forward_checkpointed(self, ham, theta, drives, every: int):
        """Positions (L, N, P) from zero whose autodiff keeps the state every ``every`` steps only."""
        return run_leapfrog_checkpointed(ham, theta, drives, *zero_state(ham, theta, drives), every)[0]

    def echo(self, ham, rhel, rule, theta, drives, final_state, cotangents, final_state_cotangent=None):
        """The ±ε echo by a sequential scan, carried as mean and half-difference (``gradients`` module doc).

        Undo forward step k with input u_k, then add ε·g_{k−1} to the momentum. ``final_state_cotangent``
        (λ_φ, λ_π) = (∂L/∂φ_{L−1}, ∂L/∂π_{L−1}) when the final state is itself an output (a time chunk
        followed by another), else None. In the echo's coordinates the adjoint's position and momentum
        parts swap (the momentum flip): λ_φ joins the last momentum nudge, λ_π nudges the echo's position,
        and after the last echo step the half-difference (h_φ, h_π) gives the initial state's cotangent
        (h_π, h_φ)/ε. Only the per-step drive gradient is L-sized; the parameter sums are carried.
        """
        w_mean, w_half = rhel.nudge_weights()
        eps = rhel.eps
        position, momentum = final_state
        next_nudges = nudges_after_each_step(cotangents)
        last_nudge, position_nudge = cotangents[-1], jnp.zeros_like(position)
        if final_state_cotangent is not None:
            last_nudge = last_nudge + final_state_cotangent[0]
            position_nudge = final_state_cotangent[1]
        mean = (position + w_mean * eps * position_nudge, -momentum + w_mean * eps * last_nudge)
        half = (w_half * eps * position_nudge, w_half * eps * last_nudge)
        acc = jax.tree_util.tree_map(jnp.zeros_like, theta)
        end_mean, end_half, acc, drive_half_diffs = echo_steps(ham, rhel, rule, theta, drives, mean, half, acc,
                                                               next_nudges)
        scale, span = estimator_scale(rhel), half_difference_span(rhel)
        grad_theta = jax.tree_util.tree_map(lambda a: scale * a, acc)
        initial_cotangent = (end_half[1] / span, end_half[0] / span)
        return EchoResult(grad_theta, scale * drive_half_diffs, end_mean, initial_cotangent)

    # --- a stretch at a time (``hamecho.nn.streaming``) -----------------------------------------------
    def rebuild(self, ham, theta, drives, final_state):
        """The free echo over a stretch: (positions (L, N, P), the state it started from); see
        :func:`rebuild_leapfrog`."""
        return rebuild_leapfrog(ham, theta, drives, final_state)

    def echo_start(self, rhel, final_state):
        """The echo's carry at the end of the sequence, before any nudge: (mean, half-difference)."""
        position, momentum = final_state
        zeros = jnp.zeros_like(position)
        return (position, -momentum), (zeros, zeros)

    def echo_stretch(self, ham, rhel, rule, theta, drives, carry, cotangents, acc):
        """Resume the ±ε echo over one stretch of drives (L, N, U), the last stretch first.

        ``carry``: (mean, half-difference) where the echo of the later stretch ended (``echo_start`` for
        the last one); ``cotangents`` (L, N, P): the positions' cotangents over this stretch (the echo
        first adds ε·g_{L−1}, the nudge the later stretch left for it); ``acc``: the running sum of the
        parameter half-differences. Returns (carry, acc, ∂L/∂drives (L, N, U)). Over consecutive
        stretches this is :meth:`echo` step for step, with the same arithmetic; :meth:`echo_gradient`
        turns the final ``acc`` into ∂L/∂θ.
        """
        w_mean, w_half = rhel.nudge_weights()
        eps = rhel.eps
        (m_q, m_p), (h_q, h_p) = carry
        last = cotangents[-1]
        mean, half = (m_q, m_p + w_mean * eps * last), (h_q, h_p + w_half * eps * last)
        end_mean, end_half, acc, drive_half_diffs = echo_steps(ham, rhel, rule, theta, drives, mean, half, acc,
                                                               nudges_after_each_step(cotangents))
        return (end_mean, end_half), acc, estimator_scale(rhel) * drive_half_diffs

    def echo_gradient(self, rhel, acc):
        """∂L/∂θ from the parameter sum ``echo_stretch`` carried."""
        scale = estimator_scale(rhel)
        return jax.tree_util.tree_map(lambda a: scale * a, acc)


def _echo_steps(ham: SeparableHamiltonian, rhel: RHEL, rule: str, theta, drives, mean, half, acc, nudges):
    """The ±ε echo's steps over drives (L, N, U), last step first, carried as mean and half-difference.

    mean, half: (φ, π) of (Φ₊ + Φ₋)/2 and (Φ₊ − Φ₋)/2 before the echo step that undoes drives[L−1],
    already nudged; nudges[k]: what is added (weighted, times ε) to the momentum after the step undoing
    drives[k] (``nudges_after_each_step``); acc: the running sum of the parameter half-differences.
    Returns (mean, half, acc) after the step undoing drives[0] and the per-step drive half-differences
    (L, N, U), unscaled. Shared by :meth:`Leapfrog.echo` (a whole sequence) and
    :meth:`Leapfrog.echo_stretch` (one stretch at a time).
    """
    w_mean, w_half = rhel.nudge_weights()
    eps = rhel.eps
    step = ham.step_size(theta)
    velocity = lambda p: batched_velocity(ham, theta, p)
    per_sample = per_sample_sums()
    total, acc = acc, per_sample_zeros(theta, drives.shape[1]) if per_sample else acc

    def body(carry, inputs):
        (m_q, m_p), (h_q, h_p), acc = carry
        drive, nudge = inputs
        v_mean, v_half = mean_and_half_difference(velocity, m_p, h_p, rule)
        half_q = (m_q + 0.5 * step * v_mean, h_q + 0.5 * step * v_half)
        force = lambda q: batched_force(ham, theta, q, drive)
        f_mean, f_half = mean_and_half_difference(force, *half_q, rule)
        new_p = (m_p + step * f_mean, h_p + step * f_half)
        energy_grads = lambda states: step_energy_gradients(ham, theta, states, drive, per_sample)
        g_theta, g_drive = half_difference(energy_grads, (half_q[0], m_p, new_p[0]),
                                           (half_q[1], h_p, new_p[1]), rule)
        acc = jax.tree_util.tree_map(jnp.add, acc, g_theta)
        v_mean, v_half = mean_and_half_difference(velocity, *new_p, rule)
        new_q = (half_q[0] + 0.5 * step * v_mean, half_q[1] + 0.5 * step * v_half)
        new_mean = (new_q[0], new_p[0] + w_mean * eps * nudge)
        new_half = (new_q[1], new_p[1] + w_half * eps * nudge)
        return (new_mean, new_half, acc), g_drive

    (end_mean, end_half, acc), drive_half_diffs = jax.lax.scan(body, (mean, half, acc), (drives, nudges),
                                                               reverse=True)
    return end_mean, end_half, add_sample_sums(total, acc) if per_sample else acc, drive_half_diffs


def per_sample_zeros(theta, samples: int):
    """Zero sums with theta's structure and a leading axis of ``samples`` (``per_sample_sums``)."""
    return jax.tree_util.tree_map(lambda t: jnp.zeros((samples,) + jnp.shape(t), jnp.result_type(t)), theta)


def add_sample_sums(total, per_sample):
    """``total`` + the per-sample sums summed over the samples (one reduction over the batch)."""
    return jax.tree_util.tree_map(lambda t, s: t + jnp.sum(s, axis=0), total, per_sample)


# Traced once per signature, replayed for every other core of the same shapes (the blocks of a model):
# ``hamecho.core.tracing``. The same operations either way; only the Python work of tracing is saved. Whether the
# sums are kept per sample (``per_sample_sums``, read when tracing) is part of the signature.
_leapfrog_scan = trace_once(_scan_leapfrog, static_argnums=(0, 1), context=lambda: per_sample_sums())
echo_steps = trace_once(_echo_steps, static_argnums=(0, 1, 2), context=lambda: per_sample_sums())
