"""ExactFlow: the linear HRU's continuous-time limit in JAX, the BPTT reference for ``CircuitDevice``.

The leapfrog is a discretisation. A bank of LC tanks (``CircuitDevice``) integrates the continuous
dynamics the leapfrog approximates: per channel, with the drive u_k held over step k (one unit of the
circuit's time τ per drive step, δ the channel's step, A its stiffness, R the series resistance):

    dφ/dτ = δ·π − R·δ·A·φ,        dπ/dτ = δ·(u_k − A·φ)

(φ: the inductor's flux, π: the capacitor's charge; R = 0 is the ideal, energy-conserving tank.) Over
one step this linear system has the exact solution x_{k+1} = e^M x_k + (∫₀¹ e^{Ms} ds)·b·u_k, computed
once per channel from the matrix exponential of the augmented 3×3 matrix [[M, b], [0, 0]]. BPTT through
it is the gradient of the ideal (or lossy) circuit's own loss:
``value_and_grad(model, x, y, gradient=BPTT(), integrator=ExactFlow(series_resistance=R))``.
BPTT only, and the linear HRU only. It starts from any state, so it is also the circuit's twin for
``hamecho.PhysicsAware`` (``CircuitDevice.twin()``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp

from ..core.hamiltonians import linear_step_size, linear_stiffness
from ..core.integrators import AbstractIntegrator, zero_state


def check_linear(ham, who: str) -> None:
    """Refuse a Hamiltonian other than the paper's linear HRU (an LC tank is linear)."""
    if ham.name != "linear":
        raise ValueError(f"{who} is a bank of LC tanks: it runs the linear HRU (hru='linear') only; got the "
                         f"Hamiltonian {ham.name!r}")


def step_matrices(theta, series_resistance: float):
    """Per channel, the exact one-step map of the tank: F (P, 2, 2) on (φ, π) and c (P, 2), the response to
    a unit drive held over the step: x_{k+1} = F·x_k + c·u_k."""
    step, stiffness = linear_step_size(theta), linear_stiffness(theta)
    zero = jnp.zeros_like(step)
    rows = [[-series_resistance * step * stiffness, step, zero],
            [-step * stiffness, zero, step],
            [zero, zero, zero]]
    generator = jnp.stack([jnp.stack(row, axis=-1) for row in rows], axis=-2)     # (P, 3, 3)
    flow = jax.vmap(jax.scipy.linalg.expm)(generator)
    return flow[:, :2, :2], flow[:, :2, 2]


@dataclass(frozen=True)
class ExactFlow(AbstractIntegrator):
    """The linear HRU's exact continuous-time flow per step, drive held (module docstring); BPTT only."""

    dtype: ClassVar[str] = "auto"
    starts_from_state: ClassVar[bool] = True
    series_resistance: float = 0.0

    def __post_init__(self):
        value = self.series_resistance
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"series_resistance must be a finite number ≥ 0 (ohms); got {value!r}")

    def forward(self, ham, theta, drives, initial_state=None):
        """Positions (L, N, P) after each step and the final state, from ``initial_state`` (default: zero)."""
        check_linear(ham, repr(self))
        if initial_state is None:
            initial_state = zero_state(ham, theta, drives)
        initial_state = tuple(s.astype(drives.dtype) for s in initial_state)
        transition, response = step_matrices(theta, self.series_resistance)
        transition, response = transition.astype(drives.dtype), response.astype(drives.dtype)

        def body(state, drive):
            position, momentum = state
            new_position = transition[:, 0, 0] * position + transition[:, 0, 1] * momentum + response[:, 0] * drive
            new_momentum = transition[:, 1, 0] * position + transition[:, 1, 1] * momentum + response[:, 1] * drive
            return (new_position, new_momentum), new_position

        final_state, positions = jax.lax.scan(body, initial_state, drives)
        return positions, final_state

    def forward_checkpointed(self, ham, theta, drives, every: int):
        raise ValueError(f"{self!r} is a plain BPTT reference: use hamecho.BPTT() without checkpoint_every")

    def echo(self, ham, rhel, rule, theta, drives, final_state, cotangents, final_state_cotangent=None):
        raise ValueError(f"{self!r} is the BPTT reference of an LC bank (gradient=hamecho.BPTT()); RHEL on the "
                         "circuit runs on hamecho.physical.CircuitDevice(...)")
