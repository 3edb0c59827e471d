"""The fixed-point leapfrog: exactly reversible on an int64 grid, and its echo.

A driven nonlinear oscillator is chaotic: in floating point the echo's rounding differs from the
forward pass's and the difference grows exponentially (docs/precision.md shows how fast). Here φ and π
are int64 on a grid of spacing 2^-b (value = int·2^-b, b = ``fraction_bits``, default 32) and every
drift and kick increment is computed in float64 and rounded to the grid with round-half-to-even
(``jnp.rint``), an odd function. Each update is then an integer addition whose increment depends only
on the *other* variable, so it is exactly invertible, and flipping the momentum makes the same step
undo it bit for bit (∂T/∂π is evaluated as sign(π)·∂T/∂π(|π|), odd bit for bit).

Range: |value| < 2^(63−b); resolution 2^-b; the float value the forces see is exact while
|value| < 2^(53−b) and rounded (deterministically, so the retrace stays exact) beyond. Inside a scan
nothing checks for int64 overflow (it would wrap): keep the state well inside the range. Needs JAX's
x64 mode (int64 and float64). Not differentiable by autodiff (``rint``): RHEL only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp

from .gradients import echo_energy_half_difference, estimator_scale, nudges_after_each_step, per_sample_sums
from .hamiltonians import SeparableHamiltonian, batched_force, batched_velocity
from .integrators import (
    AbstractIntegrator,
    EchoResult,
    add_sample_sums,
    per_sample_zeros,
    rebuilt_positions,
    state_size,
)

DEFAULT_FRACTION_BITS = 32


def require_x64(what: str = "the fixed-point integrator") -> None:
    """Raise ``ValueError`` unless JAX's x64 mode is on (int64 states, float64 increments)."""
    if not jax.config.jax_enable_x64:
        raise ValueError(f"{what} needs JAX's x64 mode (int64 states, float64 increments): "
                         "jax.config.update('jax_enable_x64', True) before building arrays")


def check_fraction_bits(fraction_bits) -> int:
    if isinstance(fraction_bits, bool) or not isinstance(fraction_bits, int) or not 1 <= fraction_bits <= 62:
        raise ValueError(f"fraction_bits must be an integer in [1, 62] (value = int64 · 2^-fraction_bits); "
                         f"got {fraction_bits!r}")
    return fraction_bits


def fixed_point_range(fraction_bits: int = DEFAULT_FRACTION_BITS) -> tuple[float, float]:
    """(largest magnitude, resolution) of the int64 grid: (2^(63−b), 2^-b)."""
    check_fraction_bits(fraction_bits)
    return 2.0 ** (63 - fraction_bits), 2.0 ** -fraction_bits


def round_to_grid(values, fraction_bits: int):
    """int64 of rint(values · 2^b) (round half to even: odd-symmetric, rint(−x) = −rint(x))."""
    return jnp.rint(jnp.asarray(values, jnp.float64) * (2.0 ** fraction_bits)).astype(jnp.int64)


def to_fixed(values, fraction_bits: int = DEFAULT_FRACTION_BITS):
    """Float array → int64 grid (nearest grid point, ties to even).

    Raises ``ValueError`` when a (concrete) value is not finite or outside ±2^(63−b); under tracing
    (jit, scan) the check cannot run and out-of-range values give undefined integers.
    """
    require_x64()
    check_fraction_bits(fraction_bits)
    values = jnp.asarray(values, jnp.float64)
    if not isinstance(values, jax.core.Tracer):
        limit = 2.0 ** (63 - fraction_bits)
        largest = float(jnp.max(jnp.abs(values))) if values.size else 0.0
        if not largest < limit:  # also catches NaN
            raise ValueError(f"value of magnitude {largest:g} does not fit the int64 fixed-point grid with "
                             f"fraction_bits={fraction_bits} (|value| < 2^{63 - fraction_bits} = {limit:g}); "
                             "use fewer fraction bits or rescale")
    return round_to_grid(values, fraction_bits)


def from_fixed(values_int, fraction_bits: int = DEFAULT_FRACTION_BITS, dtype=jnp.float64):
    """int64 grid → float: int · 2^-b (exact in float64 while |int| < 2^53)."""
    return (values_int.astype(jnp.float64) * (2.0 ** -fraction_bits)).astype(dtype)


def _odd_velocity(ham: SeparableHamiltonian, theta, momentum):
    """∂T/∂π as sign(π)·∂T/∂π(|π|): equal to ∂T/∂π for even T, and odd bit for bit."""
    return jnp.sign(momentum) * batched_velocity(ham, theta, jnp.abs(momentum))


def fixed_point_leapfrog_step(ham: SeparableHamiltonian, theta, position_int, momentum_int, drive,
                              fraction_bits: int = DEFAULT_FRACTION_BITS):
    """The leapfrog step on the int64 grid (value = int · 2^-b); see the module docstring.

        φ½ = φ + [δ/2·∂T/∂π(π)]        π' = π + [δ·F(φ½; u)]        φ' = φ½ + [δ/2·∂T/∂π(π')]

    where [x] = rint(x·2^b) and each derivative is taken in float64 at the float value of the
    integer state. Returns ``(position', momentum', half_position)``, int64, each (N, P).
    Bit-exactly reversible: ``fixed_point_leapfrog_step(φ', −π')`` returns ``(φ, −π)``.
    """
    as_float = lambda x: from_fixed(x, fraction_bits)
    step = ham.step_size(theta)
    drift = lambda p: round_to_grid(0.5 * step * _odd_velocity(ham, theta, as_float(p)), fraction_bits)
    half_position = position_int + drift(momentum_int)
    kick = round_to_grid(step * batched_force(ham, theta, as_float(half_position), drive), fraction_bits)
    new_momentum = momentum_int + kick
    new_position = half_position + drift(new_momentum)
    return new_position, new_momentum, half_position


def run_fixed_point_leapfrog(ham: SeparableHamiltonian, theta, drives, position_int, momentum_int,
                             fraction_bits: int = DEFAULT_FRACTION_BITS, *, reverse: bool = False):
    """``run_leapfrog`` on the int64 grid: drives (L, N, U) float64, states (N, P) int64.

    Returns (positions (L, N, P) as float64, (final position, final momentum) as int64). ``reverse``:
    take the drives from the last to the first (the free echo).
    """
    require_x64()
    check_fraction_bits(fraction_bits)

    def body(state, drive):
        new_position, new_momentum, _ = fixed_point_leapfrog_step(ham, theta, *state, drive, fraction_bits)
        return (new_position, new_momentum), from_fixed(new_position, fraction_bits)

    state = (jnp.asarray(position_int, jnp.int64), jnp.asarray(momentum_int, jnp.int64))
    (position, momentum), positions = jax.lax.scan(body, state, drives, reverse=reverse)
    return positions, (position, momentum)


@dataclass(frozen=True)
class FixedPointLeapfrog(AbstractIntegrator):
    """The leapfrog on an int64 grid of spacing 2^-fraction_bits: bit-exactly reversible (module doc).

    The forward pass and both RHEL echoes (+ε and −ε, or +ε and 0) run on the grid; the echoes are
    carried as separate integer states, nudged by ε·g rounded to the grid, so the free echo (ε = 0)
    returns to the zero state exactly, however chaotic the unit. Increments in float64 (x64 mode).
    RHEL only; whole sequences from the zero state, or stretch by stretch from a given integer state for
    ``hamecho.Streaming``, whose rebuild (the free echo) is then bit-exact however long the sequence.
    """

    differentiable: ClassVar[bool] = False
    streams: ClassVar[bool] = True
    not_differentiable_because: ClassVar[str] = "its rounding, rint, has no derivative"
    dtype: ClassVar[str] = "float64"
    fraction_bits: int = DEFAULT_FRACTION_BITS

    def __post_init__(self):
        check_fraction_bits(self.fraction_bits)

    def label(self) -> str:
        return f"{self!r} (integrator='fixed_point')"

    def forward(self, ham, theta, drives, initial_state=None):
        """Positions (L, N, P) float64 and the int64 final state, from zero or from an int64 state
        (one this integrator returned: ``hamecho.Streaming`` runs a sequence stretch by stretch)."""
        require_x64("integrator='fixed_point'")
        if initial_state is None:
            zeros = jnp.zeros((drives.shape[1], state_size(ham, theta, drives)), jnp.int64)
            initial_state = (zeros, zeros)
        elif any(jnp.result_type(s) != jnp.int64 for s in initial_state):
            raise ValueError("FixedPointLeapfrog starts from the zero state or from an int64 grid state it returned")
        return run_fixed_point_leapfrog(ham, theta, drives, *initial_state, self.fraction_bits)

    def rebuild(self, ham, theta, drives, final_state):
        """The free echo on the grid: (positions (L, N, P) float64, the int64 state the stretch started
        from), bit for bit the forward pass's."""
        position, momentum = final_state
        previous, (start_position, start_momentum) = run_fixed_point_leapfrog(
            ham, theta, drives, position, -momentum, self.fraction_bits, reverse=True)
        return rebuilt_positions(previous, from_fixed(position, self.fraction_bits)), (start_position,
                                                                                      -start_momentum)

    def state_as_float(self, state):
        return tuple(from_fixed(x, self.fraction_bits) for x in state)

    def echo(self, ham, rhel, rule, theta, drives, final_state, cotangents, final_state_cotangent=None):
        """The two echoes as separate integer states; their energy gradients differenced by ``rule``
        (``"direct"``, or the quadrature rule around the exact integer half-difference)."""
        if final_state_cotangent is not None:
            raise ValueError("FixedPointLeapfrog runs whole sequences: its echo takes no final-state cotangent")
        require_x64("integrator='fixed_point'")
        bits = self.fraction_bits
        eps = rhel.eps
        minus_sign = -1 if rhel.estimator == "two_sided" else 0
        position, momentum = final_state
        nudge_int = round_to_grid(eps * cotangents, bits)  # (L, N, P); the −ε echo gets exactly its negation
        next_nudges = nudges_after_each_step(nudge_int)
        plus = (position, -momentum + nudge_int[-1])
        minus = (position, -momentum + minus_sign * nudge_int[-1])
        acc = jax.tree_util.tree_map(jnp.zeros_like, theta)
        end_plus, _, acc, drive_half_diffs = _fixed_point_echo_steps(ham, rhel, rule, bits, theta, drives, plus,
                                                                     minus, acc, next_nudges)
        scale = estimator_scale(rhel)  # half-differences (Φ₊ − Φ₋)/2 → ∂L
        grad_theta = jax.tree_util.tree_map(lambda a: scale * a, acc)
        return EchoResult(grad_theta, scale * drive_half_diffs, self.state_as_float(end_plus), None)

    # --- a stretch at a time (``hamecho.nn.streaming``) -----------------------------------------------
    def echo_start(self, rhel, final_state):
        """The two echoes' integer states at the end of the sequence, before any nudge."""
        require_x64("integrator='fixed_point'")
        position, momentum = final_state
        return (position, -momentum), (position, -momentum)

    def echo_stretch(self, ham, rhel, rule, theta, drives, carry, cotangents, acc):
        """Resume both echoes over one stretch, the last stretch first (``Leapfrog.echo_stretch``): the
        same integer arithmetic as :meth:`echo` over the whole sequence."""
        bits = self.fraction_bits
        minus_sign = -1 if rhel.estimator == "two_sided" else 0
        (q_p, p_p), (q_m, p_m) = carry
        nudge_int = round_to_grid(rhel.eps * cotangents, bits)
        plus, minus = (q_p, p_p + nudge_int[-1]), (q_m, p_m + minus_sign * nudge_int[-1])
        plus, minus, acc, drive_half_diffs = _fixed_point_echo_steps(ham, rhel, rule, bits, theta, drives, plus,
                                                                     minus, acc, nudges_after_each_step(nudge_int))
        return (plus, minus), acc, estimator_scale(rhel) * drive_half_diffs

    def echo_gradient(self, rhel, acc):
        scale = estimator_scale(rhel)
        return jax.tree_util.tree_map(lambda a: scale * a, acc)


def _fixed_point_echo_steps(ham, rhel, rule, bits, theta, drives, plus, minus, acc, nudges):
    """Both echoes' integer steps over drives (L, N, U), last step first, each followed by its integer
    nudge (``nudges``, already on the grid; the −ε echo gets its negation, the one-sided 0-echo none).
    Returns (plus, minus, acc) at the start of the stretch and the unscaled drive half-differences."""
    minus_sign = -1 if rhel.estimator == "two_sided" else 0
    as_float = lambda x: from_fixed(x, bits)
    minus_int = lambda n: minus_sign * n
    per_sample = per_sample_sums()   # summed over the batch after the loop on several devices
    total, acc = acc, per_sample_zeros(theta, drives.shape[1]) if per_sample else acc

    def body(carry, inputs):
        plus, minus, acc = carry
        drive, nudge = inputs
        q_p, p_p, h_p = fixed_point_leapfrog_step(ham, theta, *plus, drive, bits)
        q_m, p_m, h_m = fixed_point_leapfrog_step(ham, theta, *minus, drive, bits)
        # the quadrature rule integrates around the exact integer half-difference
        half = tuple(from_fixed(a - b, bits + 1) for a, b in ((h_p, h_m), (plus[1], minus[1]), (p_p, p_m)))
        g_theta, g_drive = echo_energy_half_difference(
            ham, theta, tuple(map(as_float, (h_p, plus[1], p_p))), tuple(map(as_float, (h_m, minus[1], p_m))),
            drive, rule, half, per_sample)
        acc = jax.tree_util.tree_map(jnp.add, acc, g_theta)
        return ((q_p, p_p + nudge), (q_m, p_m + minus_int(nudge)), acc), g_drive

    (plus, minus, acc), drive_half_diffs = jax.lax.scan(body, (plus, minus, acc), (drives, nudges), reverse=True)
    return plus, minus, add_sample_sums(total, acc) if per_sample else acc, drive_half_diffs
