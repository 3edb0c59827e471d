"""The leapfrog step (drift–kick–drift, kick at the half-step position), its inverse, and the
parallel (associative) scan that runs a linear HRU's affine recursion in O(log L) depth.

Shapes: position and momentum (N, P) with N any flattened batch; drive (N, U).

Fixed-point leapfrog (``fixed_point_leapfrog_step``, ``run_fixed_point_leapfrog``). A driven
nonlinear oscillator is chaotic: in floating point the echo's rounding differs from the forward
pass's, and the difference grows exponentially (float64 log-cosh HRU at δ = 0.5: relative retrace
error O(1) after ~10⁴ steps). Here φ and π are int64 on a grid of spacing 2^-b (value = int·2^-b,
b = ``fraction_bits``, default 32) and every drift and kick increment is computed in float64 and
rounded to the grid with round-half-to-even (``jnp.rint``), an odd function. Each update is then an
integer addition whose increment depends only on the *other* variable, so it is exactly invertible,
and flipping the momentum makes the same step undo it bit for bit (∂T/∂π is evaluated as
sign(π)·∂T/∂π(|π|), odd bit for bit). Range: |value| < 2^(63−b) (b = 32: ±2.1e9; b = 40: ±8.4e6);
resolution 2^-b (b = 32: 2.3e-10; b = 40: 9.1e-13); the float value the forces see is exact while
|value| < 2^(53−b) (b = 32: 2.1e6) and rounded (deterministically, retrace stays exact) beyond.
Inside a scan nothing checks for int64 overflow (it would wrap): keep the state well inside the range.
Needs JAX's x64 mode (int64 and float64).
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


# --- fixed point: exactly reversible leapfrog on an int64 grid ------------------------------------

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
    """``leapfrog_step`` on the int64 grid (value = int · 2^-b); see the module docstring.

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
                             fraction_bits: int = DEFAULT_FRACTION_BITS):
    """``run_leapfrog`` on the int64 grid: drives (L, N, U) float64, states (N, P) int64.

    Returns (positions (L, N, P) as float64, (final position, final momentum) as int64).
    """
    require_x64()
    check_fraction_bits(fraction_bits)

    def body(state, drive):
        new_position, new_momentum, _ = fixed_point_leapfrog_step(ham, theta, *state, drive, fraction_bits)
        return (new_position, new_momentum), from_fixed(new_position, fraction_bits)

    state = (jnp.asarray(position_int, jnp.int64), jnp.asarray(momentum_int, jnp.int64))
    (position, momentum), positions = jax.lax.scan(body, state, drives)
    return positions, (position, momentum)
