"""The parallel scan: the leapfrog of an affine Hamiltonian as an associative scan, and its echo.

For a Hamiltonian that declares itself affine (``SeparableHamiltonian.affine_stiffness``: T = ½|π|²,
V = ½Σ Aᵢφᵢ² − φ·u per channel, like the paper's linear HRU) one leapfrog step is a time-invariant
2×2 affine map per channel, so all L states come from ``jax.lax.associative_scan`` in O(log L) depth.
The echo is affine too: both echoes (mean and half-difference) run as associative scans and the
energy gradients of all steps are evaluated at once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp

from .gradients import check_one_of, estimator_scale, half_difference, step_energy_gradients
from .integrators import CORE_DTYPES, AbstractIntegrator, EchoResult, zero_state


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


@dataclass(frozen=True)
class AffineLeapfrog(AbstractIntegrator):
    """The leapfrog of an affine Hamiltonian as a parallel (associative) scan: O(log L) depth.

    Valid for any Hamiltonian that declares itself affine (``affine_stiffness``), such as the linear HRU;
    the same states as :class:`~hamecho.core.integrators.Leapfrog` up to rounding. dtype as for Leapfrog.
    Runs whole sequences from the zero state (no time chunks).
    """

    parallel: ClassVar[bool] = True
    dtype: str = "auto"

    def __post_init__(self):
        check_one_of("dtype", self.dtype, CORE_DTYPES)

    @staticmethod
    def matrix(ham, theta):
        return linear_leapfrog_matrix(ham.affine_stiffness(theta), ham.step_size(theta))

    def forward(self, ham, theta, drives, initial_state=None):
        """Positions (L, N, P) and final state, from ``initial_state`` (default: zero)."""
        initial_q, initial_p = zero_state(ham, theta, drives) if initial_state is None else initial_state
        offsets_p, offsets_q = linear_leapfrog_offsets(ham.step_size(theta), drives)
        momenta, positions = affine_parallel_scan(self.matrix(ham, theta), offsets_p, offsets_q, initial_p, initial_q)
        return positions, (positions[-1], momenta[-1])

    def echo(self, ham, rhel, rule, theta, drives, final_state, cotangents, final_state_cotangent=None):
        """The echo of ``Leapfrog.echo`` with both passes as associative scans (no final-state cotangent)."""
        if final_state_cotangent is not None:
            raise ValueError("AffineLeapfrog runs whole sequences: its echo takes no final-state cotangent")
        w_mean, w_half = rhel.nudge_weights()
        eps = rhel.eps
        position, momentum = final_state
        step = ham.step_size(theta)
        matrix = self.matrix(ham, theta)
        drives_rev = drives[::-1]
        # Echo step j (j = 0..L−1) undoes forward step L−1−j, then nudges with g_{L−2−j}.
        nudges = jnp.concatenate([cotangents[:-1][::-1], jnp.zeros_like(cotangents[:1])], axis=0)
        offsets_p, offsets_q = linear_leapfrog_offsets(step, drives_rev)
        mean_p0, half_p0 = -momentum + w_mean * eps * cotangents[-1], w_half * eps * cotangents[-1]
        mean_p, mean_q = affine_parallel_scan(matrix, offsets_p + w_mean * eps * nudges, offsets_q,
                                              mean_p0, position)
        half_p, half_q = affine_parallel_scan(matrix, w_half * eps * nudges, jnp.zeros_like(offsets_q),
                                              half_p0, jnp.zeros_like(position))
        # States before each echo step, and the momentum right after each kick (before its nudge).
        pre = lambda seq, first: jnp.concatenate([first[None], seq[:-1]], axis=0)
        pre_m = (pre(mean_q, position), pre(mean_p, mean_p0))
        pre_h = (pre(half_q, jnp.zeros_like(position)), pre(half_p, half_p0))
        post_m_p = mean_p - w_mean * eps * nudges
        post_h_p = half_p - w_half * eps * nudges
        half_m_q = pre_m[0] + 0.5 * step * pre_m[1]
        half_h_q = pre_h[0] + 0.5 * step * pre_h[1]
        flat = lambda x: x.reshape((-1, x.shape[-1]))
        energy_grads = lambda states: step_energy_gradients(ham, theta, states, flat(drives_rev))
        g_theta, g_drive = half_difference(
            energy_grads, tuple(map(flat, (half_m_q, pre_m[1], post_m_p))),
            tuple(map(flat, (half_h_q, pre_h[1], post_h_p))), rule)
        scale = estimator_scale(rhel)
        grad_theta = jax.tree_util.tree_map(lambda a: scale * a, g_theta)
        grad_drives = scale * g_drive.reshape(drives.shape)[::-1]
        return EchoResult(grad_theta, grad_drives, (mean_q[-1], mean_p[-1]), None)
