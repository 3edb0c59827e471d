"""The two symmetric integrators of a ``HamiltonianSystem``, on a time grid, and the discretised loss.

Time is cut into ``n_steps`` steps of ``dt = T / n_steps``; state ``k`` lives at ``t_k = -T + k dt``; step
``k -> k+1`` uses the input at its midpoint ``u(t_k + dt/2)``. The integral of the loss is the trapezoidal
sum ``L = sum_k w_k ell(phi_k, t_k)`` with ``w_0 = w_N = dt/2`` and ``w_k = dt`` otherwise.

* ``separable=True`` (``H = T(pi) + V(phi)``): leapfrog / Stormer-Verlet as drift-kick-drift
  (``phi_h = phi + dt/2 dH/dpi(pi)``, ``pi' = pi - dt dH/dphi(phi_h)``, ``phi' = phi_h + dt/2 dH/dpi(pi')``),
  the core's kernel (``hamecho.core.integrators.drift_kick_drift``).
* ``separable=False``: the implicit midpoint rule ``Phi' = Phi + dt J grad H((Phi + Phi')/2)``, solved by
  ``implicit_iters`` unrolled fixed-point iterations (differentiable; with a contraction factor
  ``~ dt * Lip(grad H) / 2`` the default 30 iterations reach round-off for any reasonably resolved step).

Both are symmetric and, for ``H`` even in ``pi``, reversible under the momentum flip: the unnudged echo
(``rhel.echo``) retraces the forward trajectory exactly in exact arithmetic.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ..core.integrators import drift_kick_drift
from .system import HamiltonianSystem, Trajectory


def time_grid(T: float, n_steps: int, dtype=None) -> jax.Array:
    """State times ``t_k = -T + k T / n_steps``, ``k = 0..n_steps``."""
    dtype = dtype or jnp.zeros(()).dtype
    return -T + (T / n_steps) * jnp.arange(n_steps + 1, dtype=dtype)


def loss_weights(n_steps: int, dt, dtype=None) -> jax.Array:
    """Trapezoidal weights ``w_k`` for ``L = sum_k w_k ell(phi_k, t_k)``."""
    dtype = dtype or jnp.zeros(()).dtype
    w = jnp.full((n_steps + 1,), dt, dtype=dtype)
    return w.at[0].set(dt / 2).at[-1].set(dt / 2)


def leapfrog_parts(system, phi, pi, theta, u, dt):
    """Drift-kick-drift (the HRUs' kernel, ``hamecho.core.integrators.drift_kick_drift``); returns the
    sub-step states (phi_h, pi') and the new phi. Separable H: dH/dpi does not depend on phi."""
    velocity = lambda p: system.dH_dpi(phi, p, theta, u)
    force = lambda q: -system.dH_dphi(q, pi, theta, u)
    phi_new, pi_new, phi_h = drift_kick_drift(phi, pi, velocity, force, dt)
    return phi_h, pi_new, phi_new


def midpoint_solve(system, phi, pi, theta, u, dt):
    """Implicit midpoint: returns (phi', pi') by unrolled fixed-point iteration."""

    def flow(a, b):  # J grad H at (a, b)
        return system.dH_dpi(a, b, theta, u), -system.dH_dphi(a, b, theta, u)

    fphi, fpi = flow(phi, pi)
    guess = (phi + dt * fphi, pi + dt * fpi)

    def body(_, state):
        p1, q1 = state
        fphi, fpi = flow(0.5 * (phi + p1), 0.5 * (pi + q1))
        return phi + dt * fphi, pi + dt * fpi

    return jax.lax.fori_loop(0, system.implicit_iters, body, guess)


def step(system: HamiltonianSystem, phi, pi, theta, u, dt):
    """One step of the symmetric integrator; returns ``(phi', pi')``."""
    if system.separable:
        _, pi_new, phi_new = leapfrog_parts(system, phi, pi, theta, u, dt)
        return phi_new, pi_new
    return midpoint_solve(system, phi, pi, theta, u, dt)


def step_inputs(system, T, n_steps, dtype):
    dt = T / n_steps
    t_mid = -T + dt * (jnp.arange(n_steps, dtype=dtype) + 0.5)
    return jax.vmap(system.input_signal)(t_mid)


def integrate(system: HamiltonianSystem, theta, phi0, pi0, T: float, n_steps: int) -> Trajectory:
    """Forward pass on ``[-T, 0]``; returns all ``n_steps + 1`` states."""
    return _integrate(system, theta, phi0, pi0, T, n_steps)


def forward_states(system, theta, phi0, pi0, T, n_steps):
    dt = T / n_steps
    us = step_inputs(system, T, n_steps, phi0.dtype)

    def body(carry, u):
        phi, pi = step(system, carry[0], carry[1], theta, u, dt)
        return (phi, pi), (phi, pi)

    _, (phis, pis) = jax.lax.scan(body, (phi0, pi0), us)
    phis = jnp.concatenate([phi0[None], phis])
    pis = jnp.concatenate([pi0[None], pis])
    return Trajectory(time_grid(T, n_steps, phi0.dtype), phis, pis)


_integrate = jax.jit(forward_states, static_argnames=("system", "T", "n_steps"))


def discrete_loss(system: HamiltonianSystem, theta, phi0, pi0, T: float, n_steps: int):
    """``L = sum_k w_k ell(phi_k, t_k)`` over the discretised forward trajectory."""
    traj = forward_states(system, theta, phi0, pi0, T, n_steps)
    w = loss_weights(n_steps, T / n_steps, phi0.dtype)
    return jnp.sum(w * jax.vmap(system.running_loss)(traj.phi, traj.t))
