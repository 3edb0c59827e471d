"""DampedLeapfrog: the damped model in JAX, the BPTT reference for a device with friction.

A device with ``damping=γ`` runs the leapfrog with a friction the learner's model does not contain:

    φ½ = φ + (δ/2)·∂T/∂π(π);   π' = π + δ·F(φ½) − γ·δ·π;   φ' = φ½ + (δ/2)·∂T/∂π(π')

Its echo loses energy too, so it no longer retraces the forward pass and RHEL's estimate departs from
the true gradient (the paper's appendix A.3.1 proves this; ``hamecho robustness`` measures by how much).
The gradient a perfect learner of the damped system would follow is BPTT through these dynamics:
``value_and_grad(model, x, y, gradient=BPTT(), integrator=DampedLeapfrog(damping=γ))``. BPTT only: RHEL
on a damped system is what ``SimulatedDevice(damping=γ)`` does. It starts from any state, so it is also a
twin for ``hamecho.PhysicsAware`` (a physics-aware learner that knows the friction).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import jax

from ..core.hamiltonians import batched_force, batched_velocity
from ..core.integrators import AbstractIntegrator, drift_kick_drift, zero_state


def damped_leapfrog_step(ham, theta, position, momentum, drive, damping: float):
    """One leapfrog step with friction −γπ_before in the kick. Returns (φ', π', φ½), like ``leapfrog_step``."""
    step = ham.step_size(theta)
    velocity = lambda p: batched_velocity(ham, theta, p)
    force = lambda q: batched_force(ham, theta, q, drive) - damping * momentum
    return drift_kick_drift(position, momentum, velocity, force, step)


def check_damping(damping) -> None:
    if isinstance(damping, bool) or not isinstance(damping, (int, float)) or not math.isfinite(damping) or damping < 0:
        raise ValueError(f"damping must be a finite number ≥ 0; got {damping!r}")


def run_damped_leapfrog(ham, theta, drives, initial_state, damping: float):
    """Positions (L, N, P) and the final state of the damped leapfrog from ``initial_state`` (None: zero)."""
    if initial_state is None:
        initial_state = zero_state(ham, theta, drives)
    initial_state = tuple(s.astype(drives.dtype) for s in initial_state)

    def body(state, drive):
        position, momentum, _ = damped_leapfrog_step(ham, theta, *state, drive, damping)
        return (position, momentum), position

    final_state, positions = jax.lax.scan(body, initial_state, drives)
    return positions, final_state


@dataclass(frozen=True)
class DampedLeapfrog(AbstractIntegrator):
    """The leapfrog with friction γ (module docstring): a differentiable reference for BPTT, not for RHEL."""

    dtype: ClassVar[str] = "auto"
    starts_from_state: ClassVar[bool] = True
    damping: float = 0.0

    def __post_init__(self):
        check_damping(self.damping)

    def forward(self, ham, theta, drives, initial_state=None):
        """Positions (L, N, P) and the final state, from ``initial_state`` (default: zero)."""
        return run_damped_leapfrog(ham, theta, drives, initial_state, self.damping)

    def forward_checkpointed(self, ham, theta, drives, every: int):
        raise ValueError("DampedLeapfrog is a plain BPTT reference: use hamecho.BPTT() without checkpoint_every")

    def echo(self, ham, rhel, rule, theta, drives, final_state, cotangents, final_state_cotangent=None):
        raise ValueError(f"{self!r} is the BPTT reference of a damped system (gradient=hamecho.BPTT()); RHEL on "
                         f"damped physics runs on hamecho.physical.SimulatedDevice(damping={self.damping!r})")
