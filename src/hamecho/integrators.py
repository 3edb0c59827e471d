"""The leapfrog step (drift–kick–drift, kick at the half-step position), its inverse, and the
parallel (associative) scan that runs a linear HRU's affine recursion in O(log L) depth.

Shapes: position and momentum (N, P) with N any flattened batch; drive (N, U).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from .hamiltonians import SeparableHamiltonian, batched_force, batched_velocity


def leapfrog_step(ham: SeparableHamiltonian, theta, position, momentum, drive):
    """One HRU step, spec §2.

        φ½ = φ + (δ/2)·∂T/∂π(π)
        π' = π − δ·∂V/∂φ(φ½; θ, u)        # kick at the HALF-STEP position
        φ' = φ½ + (δ/2)·∂T/∂π(π')

    Returns ``(position', momentum', half_position)``, each (N, P).
    Exactly reversible: ``leapfrog_step(φ', −π')`` returns ``(φ, −π)`` in exact arithmetic.
    """
    step = ham.step_size(theta)
    half_position = position + 0.5 * step * batched_velocity(ham, theta, momentum)
    new_momentum = momentum + step * batched_force(ham, theta, half_position, drive)
    new_position = half_position + 0.5 * step * batched_velocity(ham, theta, new_momentum)
    return new_position, new_momentum, half_position


def inverse_leapfrog_step(ham: SeparableHamiltonian, theta, position, momentum, drive):
    """Undo ``leapfrog_step``: flip the momentum, step with the same input, flip back."""
    previous_position, flipped_momentum, _ = leapfrog_step(ham, theta, position, -momentum, drive)
    return previous_position, -flipped_momentum


def run_leapfrog(ham: SeparableHamiltonian, theta, drives, position, momentum):
    """Sequential scan over time from (φ, π), each (N, P); drives (L, N, U).

    Returns (positions (L, N, P), (final position, final momentum)).
    """

    def body(state, drive):
        new_position, new_momentum, _ = leapfrog_step(ham, theta, *state, drive)
        return (new_position, new_momentum), new_position

    (position, momentum), positions = jax.lax.scan(body, (position, momentum), drives)
    return positions, (position, momentum)


def run_leapfrog_checkpointed(ham: SeparableHamiltonian, theta, drives, position, momentum, chunk: int):
    """``run_leapfrog`` whose reverse-mode derivative stores only the state every ``chunk`` steps.

    The scan runs over chunks of ``chunk`` steps, each chunk under ``jax.checkpoint``: autodiff keeps
    the chunk-boundary states and recomputes each chunk's steps during the backward pass (BPTT with
    gradient checkpointing: one more forward pass, memory O(L/chunk + chunk) per layer instead of
    O(L)). The drives are padded with zeros to a whole number of chunks; the padded steps come after
    every returned position, so they change nothing but the final state, which is taken before them.
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


# --- linear HRU: the step as a 2×2 affine map per channel -----------------------------------

def linear_leapfrog_matrix(stiffness, step):
    """Leapfrog of T = ½π², V = ½Aφ² − φ·f as the affine map (π, φ) ↦ M(π, φ) + (δf, δ²f/2).

        M = [[1 − δ²A/2,        −δA      ],
             [δ(1 − δ²A/4),     1 − δ²A/2]]

    stiffness A and step δ broadcast to (P,); returns the four entries (m_pp, m_pq, m_qp, m_qq),
    each (P,), where p is the momentum and q the position.
    """
    stiffness, step = jnp.broadcast_arrays(stiffness, step)
    h2a = step**2 * stiffness
    diagonal = 1.0 - 0.5 * h2a
    return diagonal, -step * stiffness, step * (1.0 - 0.25 * h2a), diagonal


def linear_leapfrog_offsets(step, drives):
    """The affine part (δf, δ²f/2) for drives f of shape (..., P)."""
    return step * drives, 0.5 * step**2 * drives


def affine_parallel_scan(matrix, offsets_p, offsets_q, initial_p, initial_q):
    """All states of x_k = M x_{k−1} + b_k (k = 0..L−1), per channel, by ``associative_scan``.

    matrix: 4-tuple of (P,) entries (time-invariant); offsets_*: (L, N, P); initial_*: (N, P).
    Returns (momenta, positions), each (L, N, P). O(L) work and O(log L) depth.
    """
    m_pp, m_pq, m_qp, m_qq = matrix
    length = offsets_p.shape[0]
    # Fold the initial state into the first offset: x_0 = M x_{-1} + b_0.
    first_p = m_pp * initial_p + m_pq * initial_q + offsets_p[0]
    first_q = m_qp * initial_p + m_qq * initial_q + offsets_q[0]
    offsets_p = offsets_p.at[0].set(first_p)
    offsets_q = offsets_q.at[0].set(first_q)
    shape = (length,) + (1,) * (offsets_p.ndim - 2) + (m_pp.shape[-1],)
    mats = tuple(jnp.broadcast_to(m, shape) for m in (m_pp, m_pq, m_qp, m_qq))

    def combine(earlier, later):
        (a_pp, a_pq, a_qp, a_qq, a_p, a_q) = earlier
        (b_pp, b_pq, b_qp, b_qq, b_p, b_q) = later
        # later ∘ earlier: x ↦ B(A x + a) + b
        return (b_pp * a_pp + b_pq * a_qp, b_pp * a_pq + b_pq * a_qq,
                b_qp * a_pp + b_qq * a_qp, b_qp * a_pq + b_qq * a_qq,
                b_pp * a_p + b_pq * a_q + b_p, b_qp * a_p + b_qq * a_q + b_q)

    result = jax.lax.associative_scan(combine, mats + (offsets_p, offsets_q))
    return result[4], result[5]
