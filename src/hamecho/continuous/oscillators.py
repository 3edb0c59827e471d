"""The paper's toy: six coupled harmonic oscillators (Eq. 8), an input force on the first, a target on the
fourth."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from .system import HamiltonianSystem

N_OSC = 6


def _pairs(n):
    return np.triu_indices(n, k=1)


def oscillator_hamiltonian(phi, pi, theta, u, anharmonic=0.0):
    """``H = sum pi_i^2/(2 m_i) + 1/2 sum k_i phi_i^2 + 1/2 sum_{i<j} k_ij (phi_j - phi_i)^2 - u phi_1``.

    ``theta = {"log_m": (n,), "k": (n,), "k_ij": (n(n-1)/2,)}`` with ``m = exp(log_m)`` kept
    positive; ``k_ij`` are the couplings of all pairs ``i < j`` (``numpy.triu_indices`` order).
    The input enters as a force ``+u`` on oscillator 1 (index 0).  ``anharmonic`` adds
    ``anharmonic/4 sum phi_i^4`` (a non-linear variant; 0 for the paper's toy).
    """
    n = phi.shape[-1]
    i, j = _pairs(n)
    m = jnp.exp(theta["log_m"])
    kinetic = 0.5 * jnp.sum(pi**2 / m)
    potential = 0.5 * jnp.sum(theta["k"] * phi**2)
    potential += 0.5 * jnp.sum(theta["k_ij"] * (phi[j] - phi[i]) ** 2)
    potential += 0.25 * anharmonic * jnp.sum(phi**4)
    return kinetic + potential - u * phi[0]


@dataclasses.dataclass(frozen=True)
class OscillatorTask:
    """Input force ``u(t) = amp_u sin(omega_u t)`` on oscillator 1; oscillator 4 tracks
    ``y(t) = amp_y sin(omega_y t + phase_y)``; ``ell = 1/2 (phi_4 - y)^2``."""

    amp_u: float = 1.0
    omega_u: float = 1.0
    amp_y: float = 0.3
    omega_y: float = 1.0
    phase_y: float = 0.5
    output: int = 3  # oscillator 4
    anharmonic: float = 0.0

    def hamiltonian(self, phi, pi, theta, u):
        return oscillator_hamiltonian(phi, pi, theta, u, self.anharmonic)

    def input_signal(self, t):
        return self.amp_u * jnp.sin(self.omega_u * t)

    def target(self, t):
        return self.amp_y * jnp.sin(self.omega_y * t + self.phase_y)

    def running_loss(self, phi, t):
        return 0.5 * (phi[self.output] - self.target(t)) ** 2

    def system(self) -> HamiltonianSystem:
        return HamiltonianSystem(self.hamiltonian, self.input_signal, self.running_loss,
                                 separable=True)


def oscillator_params(key, n: int = N_OSC, dtype=None):
    """Random initial ``theta``: masses in [0.5, 2], springs in [0.5, 2], couplings in [0, 0.5]."""
    dtype = dtype or jnp.zeros(()).dtype
    k1, k2, k3 = jax.random.split(key, 3)
    log_m = jnp.log(jax.random.uniform(k1, (n,), dtype, 0.5, 2.0))
    k = jax.random.uniform(k2, (n,), dtype, 0.5, 2.0)
    k_ij = jax.random.uniform(k3, (n * (n - 1) // 2,), dtype, 0.0, 0.5)
    return {"log_m": log_m, "k": k, "k_ij": k_ij}


def parameter_names(n: int = N_OSC) -> list[str]:
    """Names in :func:`flatten` order (dict keys sorted: k, k_ij, log_m)."""
    i, j = _pairs(n)
    names = {"log_m": [f"log m{a + 1}" for a in range(n)],
             "k": [f"k{a + 1}" for a in range(n)],
             "k_ij": [f"k{a + 1},{b + 1}" for a, b in zip(i, j)]}
    return [name for key in sorted(names) for name in names[key]]
