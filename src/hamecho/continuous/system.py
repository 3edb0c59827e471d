"""A continuous-time Hamiltonian system: the Hamiltonian, its input signal and running loss; what a gradient
method returns; and the checks RHEL needs (time-reversal symmetry, separability when declared).

A physical system is described by a time-reversal-symmetric Hamiltonian ``H(phi, pi, theta, u)`` (even in
the momentum ``pi``), an input signal ``u(t)`` and a running loss ``ell(phi, t)`` on positions only. The
state ``Phi = (phi, pi)`` obeys ``dPhi/dt = J grad H`` on ``t in [-T, 0]`` from ``Phi(-T) = (phi0, pi0)``;
the objective is ``L = int_{-T}^0 ell(phi(t), t) dt``.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PyTree

from ..core.hamiltonians import check_even_in_momentum


@dataclasses.dataclass(frozen=True)
class HamiltonianSystem:
    """A time-reversal-symmetric Hamiltonian system with an input signal and a running loss.

    Attributes:
        hamiltonian: ``H(phi, pi, theta, u) -> scalar``; must be even in ``pi``.
        input_signal: ``u(t) -> array`` (JAX-traceable in ``t``).
        running_loss: ``ell(phi, t) -> scalar``; positions only, so the loss is time-reversal
            invariant.
        separable: ``True`` if ``H = T(pi; theta, u) + V(phi; theta, u)`` (leapfrog integrator),
            ``False`` for a general ``H`` (implicit midpoint integrator).
        implicit_iters: fixed-point iterations per implicit-midpoint step.
    """

    hamiltonian: Callable[..., jax.Array]
    input_signal: Callable[[jax.Array], jax.Array]
    running_loss: Callable[[jax.Array, jax.Array], jax.Array]
    separable: bool = True
    implicit_iters: int = 30

    # -- derivatives ---------------------------------------------------------------------------
    def dH_dphi(self, phi, pi, theta, u):
        return jax.grad(self.hamiltonian, argnums=0)(phi, pi, theta, u)

    def dH_dpi(self, phi, pi, theta, u):
        return jax.grad(self.hamiltonian, argnums=1)(phi, pi, theta, u)

    def dH_dtheta(self, phi, pi, theta, u):
        return jax.grad(self.hamiltonian, argnums=2)(phi, pi, theta, u)

    def dl_dphi(self, phi, t):
        return jax.grad(self.running_loss, argnums=0)(phi, t)


class Trajectory(NamedTuple):
    """States ``phi[k], pi[k]`` at times ``t[k]``, ``k = 0..n_steps``."""

    t: jax.Array
    phi: jax.Array
    pi: jax.Array


class GradientResult(NamedTuple):
    """A gradient estimate.

    Attributes:
        theta: ``dL/dtheta`` (same structure as ``theta``).
        phi0, pi0: ``dL/dphi(-T)`` and ``dL/dpi(-T)``.
        trace: per-step contributions ``g_theta(k)`` for forward step ``k`` (leading axis
            ``n_steps``, in forward-time order); ``theta == trace.sum(0)``.
        loss: the discretised loss of the forward pass.
        extras: method-specific diagnostics (echo trajectories for RHEL, ...).
    """

    theta: PyTree
    phi0: jax.Array
    pi0: jax.Array
    trace: PyTree
    loss: jax.Array
    extras: dict


def _random_states(key, phi_shape, n, scale):
    k1, k2 = jax.random.split(key)
    phi = scale * jax.random.normal(k1, (n, *phi_shape))
    pi = scale * jax.random.normal(k2, (n, *phi_shape))
    return phi, pi


def check_time_reversal(system: HamiltonianSystem, theta, phi_shape, *, t=0.0, key=None,
                        n_samples=16, scale=1.0, rtol=1e-6) -> None:
    """Raise ``ValueError`` unless ``H(phi, pi) == H(phi, -pi)`` on random states.

    RHEL relies on time-reversal symmetry: the momentum-flipped echo only retraces the forward
    trajectory when the Hamiltonian is even in the momentum.
    """
    key = jax.random.PRNGKey(0) if key is None else key
    phi, pi = _random_states(key, tuple(phi_shape), n_samples, scale)
    u = system.input_signal(jnp.asarray(t, dtype=phi.dtype))
    energy = lambda th, momenta: jax.vmap(lambda a, b: system.hamiltonian(a, b, th, u))(phi, momenta)
    check_even_in_momentum(energy, theta, pi, tolerance=rtol, what="Hamiltonian", formula="H(φ, π)")


def check_separable(system: HamiltonianSystem, theta, phi_shape, *, t=0.0, key=None,
                    n_samples=8, scale=1.0, rtol=1e-6) -> None:
    """Raise ``ValueError`` if ``system.separable`` is set but ``dH/dpi`` depends on ``phi``."""
    key = jax.random.PRNGKey(1) if key is None else key
    k1, k2 = jax.random.split(key)
    phi_a, pi = _random_states(k1, tuple(phi_shape), n_samples, scale)
    phi_b, _ = _random_states(k2, tuple(phi_shape), n_samples, scale)
    u = system.input_signal(jnp.asarray(t, dtype=phi_a.dtype))
    g = jax.vmap(lambda a, b: system.dH_dpi(a, b, theta, u))
    ga, gb = np.asarray(g(phi_a, pi)), np.asarray(g(phi_b, pi))
    if not np.allclose(ga, gb, rtol=rtol, atol=rtol * (np.abs(ga).max() + 1e-30)):
        raise ValueError(
            "Hamiltonian declared separable but dH/dpi depends on phi; pass separable=False "
            "to use the implicit midpoint integrator"
        )
