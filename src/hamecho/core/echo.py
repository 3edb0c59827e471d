"""RHEL: the echo passes, the estimators, and the custom VJP around a Hamiltonian core.

The core maps a drive sequence to the positions of a Hamiltonian recurrent unit:

    hamiltonian_core(ham, options, theta, drives (L, N, U)) -> positions (L, N, P)

With ``options.algo == "bptt"`` it is a plain scan and JAX differentiates through it. With
``"rhel"`` it is wrapped in a custom VJP: the forward keeps only ``theta``, the drives and the final
state (nothing of size L·P), and the backward runs the echo (spec §3):

    flip the final momentum; replay the drives backwards; after the step that lands on the mirror
    of state k−1, add ε·g_{k−1} to the momentum (g = incoming cotangent of the positions);
    ∂L/∂θ  = −(Σ_k ∇θE(echo+ε) − Σ_k ∇θE(echo−ε)) / (2ε)
    ∂L/∂u_k = −(∇uE_k(echo+ε) − ∇uE_k(echo−ε)) / (2ε)
    with E = δ·[V(φ½) + ½(T(π_before) + T(π_after))] at the echo's half-step states.

Numerical arrangement. The two echoes are carried as their mean m = (Φ₊ + Φ₋)/2 and half-difference
h = (Φ₊ − Φ₋)/2, which is the same computation (Φ± = m ± h) but keeps h at full relative precision
instead of as the difference of two rounded states: in float32 over tens of thousands of steps the
two echoes otherwise differ by less than the rounding they accumulate.

Differences of functions f(m + h) − f(m − h) are evaluated according to ``options.difference``:

- ``"auto"`` (default): ``"direct"`` for a nonlinear HRU whose core integrates in float64 with
  ε ≥ 1e-3 (the subtraction then loses ~1e-16/ε relative, far below RHEL's O(ε²) bias, and it is
  1.4x cheaper there), ``"quadrature"`` otherwise (the linear HRU, where it is exact; float32
  cores; tiny ε);
- ``"quadrature"``: ½∫₋₁¹ Df(m + t·h)[h] dt by the two-point Gauss–Legendre rule with
  forward-mode derivatives. No cancellation: the result has full relative precision however small
  h is. It is exact when the energies are polynomials of degree ≤ 4 in the state (the linear HRU);
  otherwise its relative error is O(|h|⁴), far below RHEL's own O(ε²) bias (measured: nonlinear
  HSSM in float64, error against BPTT 8e-14 at ε = 1e-4 against 5e-9 for "direct");
- ``"direct"``: evaluate at both echoes and subtract, as a physical system would.

The one-sided variant echoes with +ε and 0 and divides by ε.

Fixed point (``integrator="fixed_point"``). The forward pass and both echoes run on the int64 grid of
``integrators.fixed_point_leapfrog_step`` (exactly reversible: the free echo returns to the zero
state bit for bit, however chaotic the unit). The two echoes (+ε and −ε, or +ε and 0) are carried
as separate integer states, nudged by ε·g rounded to the grid; their difference is exact integer
arithmetic, and the energy gradients are differenced in float64 (``"direct"``), or by the quadrature
rule around the exact half-difference when ``difference_rule`` says "quadrature". Not differentiable
by autodiff (``rint``): BPTT needs ``integrator="float"``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp

from .hamiltonians import LINEAR_HAMILTONIAN, SeparableHamiltonian, batched_velocity, batched_force
from .hamiltonians import linear_step_size, linear_stiffness
from .integrators import (DEFAULT_FRACTION_BITS, affine_parallel_scan, check_fraction_bits,
                          fixed_point_leapfrog_step, from_fixed, linear_leapfrog_matrix,
                          linear_leapfrog_offsets, require_x64, round_to_grid, run_fixed_point_leapfrog,
                          run_leapfrog, run_leapfrog_checkpointed)

ALGOS = ("rhel", "bptt")
ESTIMATORS = ("two_sided", "one_sided")
SCANS = ("auto", "sequential", "parallel")
DIFFERENCES = ("auto", "quadrature", "direct")
# difference="auto" subtracts the two echoes directly only in float64 and for ε at least this large.
DIRECT_MIN_EPS = 1e-3
CORE_DTYPES = ("auto", "input", "float64")
INTEGRATORS = ("float", "fixed_point")


def default_scan() -> str:
    """Sequential on CPU (measured faster there, see README), parallel on accelerators."""
    return "sequential" if jax.default_backend() == "cpu" else "parallel"


@dataclass(frozen=True)
class CoreOptions:
    """Static options of a Hamiltonian core (hashable; part of the compiled function's key)."""

    algo: str = "rhel"
    eps: float = 0.1
    estimator: str = "two_sided"
    scan: str = "auto"
    difference: str = "auto"
    core_dtype: str = "auto"
    checkpoint_chunk: int | None = None
    # Memory: keep only each HSSM block's input per time step and recompute the block (feed-forward parts and
    # core forward) in the backward pass; see models.recompute_in_backward. Costs one more forward per block.
    recompute_blocks: bool = False
    # Memory: run every HSSM block over time chunks of this many steps, each chunk recomputed in the backward
    # pass (models.Block.forward_in_chunks): a block keeps its input, not its activations.
    block_chunk: int | None = None
    # "fixed_point": φ, π as int64 multiples of 2**-fraction_bits, exactly reversible (integrators.py).
    integrator: str = "float"
    fraction_bits: int = DEFAULT_FRACTION_BITS

    def __post_init__(self):
        for field, value, allowed in (("algo", self.algo, ALGOS), ("estimator", self.estimator, ESTIMATORS),
                                      ("scan", self.scan, SCANS), ("difference", self.difference, DIFFERENCES),
                                      ("core_dtype", self.core_dtype, CORE_DTYPES),
                                      ("integrator", self.integrator, INTEGRATORS)):
            if value not in allowed:
                raise ValueError(f"{field} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
        if not (isinstance(self.eps, (int, float)) and math.isfinite(self.eps) and self.eps > 0):
            raise ValueError(f"eps must be a finite number > 0; got {self.eps!r}")
        if self.checkpoint_chunk is not None:
            if not isinstance(self.checkpoint_chunk, int) or self.checkpoint_chunk <= 0:
                raise ValueError(f"checkpoint_chunk must be a positive integer or None; got {self.checkpoint_chunk!r}")
            if self.algo != "bptt" or self.scan == "parallel":
                raise ValueError("checkpoint_chunk (BPTT with gradient checkpointing over time) needs "
                                 f"algo='bptt' and a sequential scan; got algo={self.algo!r}, scan={self.scan!r}")
        if self.block_chunk is not None:
            if not isinstance(self.block_chunk, int) or isinstance(self.block_chunk, bool) or self.block_chunk <= 0:
                raise ValueError(f"block_chunk must be a positive integer or None; got {self.block_chunk!r}")
            if self.scan == "parallel" or self.integrator == "fixed_point":
                raise ValueError("block_chunk (blocks run over time chunks) needs a sequential scan and "
                                 f"integrator='float'; got scan={self.scan!r}, integrator={self.integrator!r}")
        check_fraction_bits(self.fraction_bits)
        if self.integrator == "fixed_point":
            if self.algo == "bptt":
                raise ValueError("integrator='fixed_point' cannot be differentiated by BPTT (its rounding, "
                                 "rint, has no derivative): use algo='rhel', or integrator='float' for a "
                                 "BPTT reference")
            if self.scan == "parallel":
                raise ValueError("integrator='fixed_point' runs a sequential scan; got scan='parallel' "
                                 "(use 'sequential' or 'auto')")

    @property
    def fixed_point(self) -> bool:
        return self.integrator == "fixed_point"

    def scan_for(self, ham: SeparableHamiltonian) -> str:
        """The scan this core runs: "auto" is parallel for the linear HRU on accelerators and sequential
        otherwise (CPU, where it is faster, and every nonlinear HRU, whose step is not affine)."""
        if self.scan != "auto":
            return self.scan
        if self.fixed_point:
            return "sequential"
        return default_scan() if ham is LINEAR_HAMILTONIAN else "sequential"

    def compute_dtype(self, input_dtype):
        """The dtype the core integrates in, for drives of ``input_dtype``.

        "auto": float64 when JAX's x64 mode is on (the model may stay float32), else the input's
        dtype; "input": always the input's dtype; "float64": float64 (needs x64 mode).
        Why: a float32 oscillator drifts in phase by ~1e-8 rad per step from rounded coefficients,
        which after 18k steps moves gradients by ~1e-2 (RHEL and BPTT alike); in float64 the core
        costs about 20 % more step time on CPU and removes that error (README, "float32 fidelity").
        """
        if self.core_dtype == "input":
            return jnp.dtype(input_dtype)
        x64 = jax.config.jax_enable_x64
        if self.core_dtype == "float64" and not x64:
            raise ValueError("core_dtype='float64' needs JAX's x64 mode: "
                             "jax.config.update('jax_enable_x64', True) before building arrays")
        return jnp.dtype(jnp.float64) if x64 else jnp.dtype(input_dtype)

    def difference_rule(self, ham: SeparableHamiltonian, compute_dtype) -> str:
        """The rule the echo uses to difference its two branches for ``ham`` in ``compute_dtype``.

        "auto": quadrature for the linear HRU (exact for its quadratic energies, so RHEL equals BPTT to
        rounding, and cheap), for float32 cores and for ε < 1e-3; direct subtraction otherwise (float64
        cores: it loses only ~1e-16/ε and is 1.4x cheaper on the nonlinear HRU).
        """
        if self.difference != "auto":
            return self.difference
        wide = jnp.dtype(compute_dtype) == jnp.dtype(jnp.float64)
        if ham is LINEAR_HAMILTONIAN or not wide or self.eps < DIRECT_MIN_EPS:
            return "quadrature"
        return "direct"

    def nudge_weights(self) -> tuple[float, float]:
        """How the nudge ε·g splits into the mean and half-difference of the two echoes."""
        return (0.0, 1.0) if self.estimator == "two_sided" else (0.5, 0.5)


# --- differences of a function evaluated on the two echoes ------------------------------------

_GAUSS_NODE = 1.0 / math.sqrt(3.0)


def _tree_axpy(a, x, y):
    return jax.tree_util.tree_map(lambda xi, yi: yi + a * xi, x, y)


def half_difference(fn, mean, half, rule: str):
    """(fn(mean + half) − fn(mean − half)) / 2 for pytrees ``mean``/``half`` (see module doc)."""
    if rule == "direct":
        plus, minus = fn(_tree_axpy(1.0, half, mean)), fn(_tree_axpy(-1.0, half, mean))
        return jax.tree_util.tree_map(lambda a, b: 0.5 * (a - b), plus, minus)
    # Two-point Gauss–Legendre on t ↦ Df(m + t·h)[h] (see the module docstring).
    _, d_plus = jax.jvp(fn, (_tree_axpy(_GAUSS_NODE, half, mean),), (half,))
    _, d_minus = jax.jvp(fn, (_tree_axpy(-_GAUSS_NODE, half, mean),), (half,))
    return jax.tree_util.tree_map(lambda a, b: 0.5 * (a + b), d_plus, d_minus)


def mean_and_half_difference(fn, mean, half, rule: str):
    """Mean and half-difference of fn over the two echoes m ± h."""
    plus, minus = fn(_tree_axpy(1.0, half, mean)), fn(_tree_axpy(-1.0, half, mean))
    mean_value = jax.tree_util.tree_map(lambda a, b: 0.5 * (a + b), plus, minus)
    if rule == "direct":
        return mean_value, jax.tree_util.tree_map(lambda a, b: 0.5 * (a - b), plus, minus)
    return mean_value, half_difference(fn, mean, half, rule)


def step_energy_gradients(ham: SeparableHamiltonian, theta, states, drive):
    """∇θ Σ_n E_n and ∇_drive E_n for N samples.

    states = (half_position, momentum_before, momentum_after), each (N, P); drive (N, U).
    Returns (gradient with theta's structure, drive gradient (N, U)).
    """
    half_position, momentum_before, momentum_after = states
    energies = jax.vmap(ham.step_energy, in_axes=(None, 0, 0, 0, 0))
    total = lambda th, u: jnp.sum(energies(th, half_position, momentum_before, momentum_after, u))
    return jax.grad(total, argnums=(0, 1))(theta, drive)


# --- forward ------------------------------------------------------------------------------------

def _linear_matrix(theta):
    return linear_leapfrog_matrix(linear_stiffness(theta), linear_step_size(theta))


def core_forward(ham: SeparableHamiltonian, scan: str, theta, drives):
    """Positions (L, N, P) and the final state from zero, by the chosen scan."""
    length, batch = drives.shape[:2]
    n_state = _state_size(ham, theta, drives)
    zeros = jnp.zeros((batch, n_state), drives.dtype)
    if scan == "sequential":
        return run_leapfrog(ham, theta, drives, zeros, zeros)
    _require_linear(ham)
    step = linear_step_size(theta)
    offsets_p, offsets_q = linear_leapfrog_offsets(step, drives)
    momenta, positions = affine_parallel_scan(_linear_matrix(theta), offsets_p, offsets_q, zeros, zeros)
    return positions, (positions[-1], momenta[-1])


def _state_size(ham, theta, drives) -> int:
    step_shape = jnp.shape(ham.step_size(theta))
    if step_shape:
        return step_shape[-1]
    # Scalar step: the state size is the force's size for one sample.
    probe = jax.eval_shape(lambda u: ham.potential(theta, jnp.zeros(u.shape[-1:], u.dtype), u), drives[0, 0])
    if probe.shape:
        return probe.shape[-1]
    raise ValueError(f"cannot infer the state size of Hamiltonian {ham.name!r}: give it a per-channel "
                     "step size or per-channel energies")


def _require_linear(ham):
    if ham is not LINEAR_HAMILTONIAN:
        raise ValueError(f"scan='parallel' needs the linear HRU (a time-invariant affine step); "
                         f"Hamiltonian {ham.name!r} must use scan='sequential'")


# --- echo -----------------------------------------------------------------------------------------

def _nudges_after_each_step(nudges):
    """The nudge that follows the echo step undoing forward step k: nudges[k − 1], none after step 0."""
    return jnp.concatenate([jnp.zeros_like(nudges[:1]), nudges[:-1]], axis=0)


def echo_pass(ham: SeparableHamiltonian, options: CoreOptions, theta, drives, final_state, cotangents):
    """Run the ±ε echo (as mean and half-difference) and return the RHEL estimates.

    drives (L, N, U); final_state = (φ_{L−1}, π_{L−1}), each (N, P); cotangents g (L, N, P).
    Returns (∂L/∂θ with theta's structure, ∂L/∂drives (L, N, U), echo end state mean (φ, π)).
    Only the per-step drive gradient is L-sized; the parameter sums are carried.
    With ``options.integrator == "fixed_point"`` the final state is int64 (``fixed_point_forward``)
    and the returned end state is the +ε echo's, as floats.
    """
    if options.fixed_point:
        return _echo_fixed_point(ham, options, theta, drives, final_state, cotangents)
    if options.scan_for(ham) == "parallel":
        return _echo_parallel(ham, options, theta, drives, final_state, cotangents)
    return echo_pass_sequential(ham, options, theta, drives, final_state, cotangents)[:3]


def echo_pass_sequential(ham: SeparableHamiltonian, options: CoreOptions, theta, drives, final_state,
                         cotangents, final_state_cotangent=None):
    """``echo_pass`` by a sequential scan, for a core whose final state may itself be differentiated.

    final_state_cotangent: (λ_φ, λ_π) = (∂L/∂φ_{L−1}, ∂L/∂π_{L−1}) when the final state is an output
    (a time chunk followed by another), else None. The echo's half-difference is ε·(λ_π, λ_φ) in the
    echo's coordinates (the adjoint state, position and momentum parts swapped by the momentum flip):
    λ_φ adds to the last momentum nudge, λ_π nudges the echo's position, and after the last echo step
    the half-difference (h_φ, h_π) gives the initial state's cotangent (h_π, h_φ)/ε.
    Returns (∂L/∂θ, ∂L/∂drives, echo end state mean (φ, π), (∂L/∂φ_initial, ∂L/∂π_initial)).
    """
    rule = options.difference_rule(ham, drives.dtype)
    w_mean, w_half = options.nudge_weights()
    eps = options.eps
    position, momentum = final_state
    next_nudges = _nudges_after_each_step(cotangents)
    last_nudge, position_nudge = cotangents[-1], jnp.zeros_like(position)
    if final_state_cotangent is not None:
        last_nudge = last_nudge + final_state_cotangent[0]
        position_nudge = final_state_cotangent[1]
    mean = (position + w_mean * eps * position_nudge, -momentum + w_mean * eps * last_nudge)
    half = (w_half * eps * position_nudge, w_half * eps * last_nudge)
    acc = jax.tree_util.tree_map(jnp.zeros_like, theta)
    step = ham.step_size(theta)
    velocity = lambda p: batched_velocity(ham, theta, p)

    def body(carry, inputs):
        (m_q, m_p), (h_q, h_p), acc = carry
        drive, nudge = inputs
        v_mean, v_half = mean_and_half_difference(velocity, m_p, h_p, rule)
        half_q = (m_q + 0.5 * step * v_mean, h_q + 0.5 * step * v_half)
        force = lambda q: batched_force(ham, theta, q, drive)
        f_mean, f_half = mean_and_half_difference(force, *half_q, rule)
        new_p = (m_p + step * f_mean, h_p + step * f_half)
        energy_grads = lambda states: step_energy_gradients(ham, theta, states, drive)
        g_theta, g_drive = half_difference(energy_grads, (half_q[0], m_p, new_p[0]),
                                           (half_q[1], h_p, new_p[1]), rule)
        acc = jax.tree_util.tree_map(jnp.add, acc, g_theta)
        v_mean, v_half = mean_and_half_difference(velocity, *new_p, rule)
        new_q = (half_q[0] + 0.5 * step * v_mean, half_q[1] + 0.5 * step * v_half)
        new_mean = (new_q[0], new_p[0] + w_mean * eps * nudge)
        new_half = (new_q[1], new_p[1] + w_half * eps * nudge)
        return (new_mean, new_half, acc), g_drive

    (end_mean, end_half, acc), drive_half_diffs = jax.lax.scan(body, (mean, half, acc), (drives, next_nudges),
                                                               reverse=True)
    scale = -1.0 / (w_half * eps)
    grad_theta = jax.tree_util.tree_map(lambda a: scale * a, acc)
    initial_cotangent = (end_half[1] / (w_half * eps), end_half[0] / (w_half * eps))
    return grad_theta, scale * drive_half_diffs, end_mean, initial_cotangent


def _echo_parallel(ham, options, theta, drives, final_state, cotangents):
    """The same echo as ``echo_pass`` with both passes as associative scans (linear HRU only)."""
    _require_linear(ham)
    rule = options.difference_rule(ham, drives.dtype)
    w_mean, w_half = options.nudge_weights()
    eps = options.eps
    position, momentum = final_state
    step = linear_step_size(theta)
    matrix = _linear_matrix(theta)
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
    scale = -1.0 / (w_half * eps)
    grad_theta = jax.tree_util.tree_map(lambda a: scale * a, g_theta)
    grad_drives = scale * g_drive.reshape(drives.shape)[::-1]
    return grad_theta, grad_drives, (mean_q[-1], mean_p[-1])


def fixed_point_forward(ham: SeparableHamiltonian, options: CoreOptions, theta, drives):
    """Positions (L, N, P) float64 and the int64 final state, on the grid, from zero (float64 inputs)."""
    require_x64("integrator='fixed_point'")
    length, batch = drives.shape[:2]
    zeros = jnp.zeros((batch, _state_size(ham, theta, drives)), jnp.int64)
    return run_fixed_point_leapfrog(ham, theta, drives, zeros, zeros, options.fraction_bits)


def _echo_fixed_point(ham, options, theta, drives, final_state, cotangents):
    """The RHEL echo on the int64 grid: the +ε and −ε (or 0) echoes as separate integer states."""
    require_x64("integrator='fixed_point'")
    bits = options.fraction_bits
    rule = options.difference_rule(ham, jnp.float64)
    eps = options.eps
    minus_sign = -1 if options.estimator == "two_sided" else 0
    position, momentum = final_state
    as_float = lambda x: from_fixed(x, bits)
    nudge_int = round_to_grid(eps * cotangents, bits)  # (L, N, P); the −ε echo gets exactly its negation
    next_nudges = _nudges_after_each_step(nudge_int)
    minus_int = lambda n: minus_sign * n
    plus = (position, -momentum + nudge_int[-1])
    minus = (position, -momentum + minus_int(nudge_int[-1]))
    acc = jax.tree_util.tree_map(jnp.zeros_like, theta)

    def body(carry, inputs):
        plus, minus, acc = carry
        drive, nudge = inputs
        q_p, p_p, h_p = fixed_point_leapfrog_step(ham, theta, *plus, drive, bits)
        q_m, p_m, h_m = fixed_point_leapfrog_step(ham, theta, *minus, drive, bits)
        energy_grads = lambda states: step_energy_gradients(ham, theta, states, drive)
        if rule == "direct":
            g_plus = energy_grads((as_float(h_p), as_float(plus[1]), as_float(p_p)))
            g_minus = energy_grads((as_float(h_m), as_float(minus[1]), as_float(p_m)))
            g_theta, g_drive = jax.tree_util.tree_map(lambda a, b: 0.5 * (a - b), g_plus, g_minus)
        else:  # quadrature around the exact integer half-difference
            half = tuple(from_fixed(a - b, bits + 1) for a, b in ((h_p, h_m), (plus[1], minus[1]), (p_p, p_m)))
            mean = tuple(as_float(b) + d for b, d in zip((h_m, minus[1], p_m), half))
            g_theta, g_drive = half_difference(energy_grads, mean, half, rule)
        acc = jax.tree_util.tree_map(jnp.add, acc, g_theta)
        return ((q_p, p_p + nudge), (q_m, p_m + minus_int(nudge)), acc), g_drive

    (end_plus, _, acc), drive_half_diffs = jax.lax.scan(body, (plus, minus, acc), (drives, next_nudges),
                                                        reverse=True)
    # half-differences (Φ₊ − Φ₋)/2 → two-sided: divide by ε; one-sided (Φ₋ = 0-echo): by ε/2
    scale = -1.0 / (eps if options.estimator == "two_sided" else 0.5 * eps)
    grad_theta = jax.tree_util.tree_map(lambda a: scale * a, acc)
    return grad_theta, scale * drive_half_diffs, tuple(map(as_float, end_plus))


def _core_positions_and_state(ham, options, theta_c, drives_c):
    if options.fixed_point:
        return fixed_point_forward(ham, options, theta_c, drives_c)
    return core_forward(ham, options.scan_for(ham), theta_c, drives_c)


# --- the core with its custom VJP -----------------------------------------------------------------

def hamiltonian_core(ham: SeparableHamiltonian, options: CoreOptions, theta, drives):
    """Positions (L, N, P) of the HRU driven by ``drives`` (L, N, U) from the zero state.

    Differentiable: by autodiff through the scan when ``options.algo == "bptt"``, by RHEL otherwise.
    The integration runs in ``options.compute_dtype(drives.dtype)``; the positions come back in the
    drives' dtype.
    """
    if options.algo == "rhel":
        return _rhel_core(ham, options, theta, drives)  # casts inside: its residuals keep the input dtype
    theta_c, drives_c = to_compute_dtype(options, theta, drives)
    if options.checkpoint_chunk is not None:
        zeros = jnp.zeros((drives.shape[1], _state_size(ham, theta_c, drives_c)), drives_c.dtype)
        positions = run_leapfrog_checkpointed(ham, theta_c, drives_c, zeros, zeros, options.checkpoint_chunk)[0]
    else:
        positions = core_forward(ham, options.scan_for(ham), theta_c, drives_c)[0]
    return positions.astype(drives.dtype)


def to_compute_dtype(options: CoreOptions, theta, drives):
    """theta and drives cast to the dtype the core integrates in (a no-op when they already are).

    The fixed-point integrator computes its increments in float64 whatever ``core_dtype`` says.
    """
    if options.fixed_point:
        require_x64("integrator='fixed_point'")
    compute = jnp.dtype(jnp.float64) if options.fixed_point else options.compute_dtype(drives.dtype)
    widen = lambda a: a.astype(compute) if jnp.issubdtype(jnp.result_type(a), jnp.floating) else a
    return jax.tree_util.tree_map(widen, theta), drives.astype(compute)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _rhel_core(ham, options, theta, drives):
    theta_c, drives_c = to_compute_dtype(options, theta, drives)
    return _core_positions_and_state(ham, options, theta_c, drives_c)[0].astype(drives.dtype)


def _rhel_forward(ham, options, theta, drives):
    theta_c, drives_c = to_compute_dtype(options, theta, drives)
    positions, final_state = _core_positions_and_state(ham, options, theta_c, drives_c)
    # Residuals: the parameters, the drives (in their own dtype) and the final state. Nothing else of length L.
    return positions.astype(drives.dtype), (theta, drives, final_state)


def _rhel_backward(ham, options, residuals, cotangents):
    theta, drives, final_state = residuals
    theta_c, drives_c = to_compute_dtype(options, theta, drives)
    grad_theta, grad_drives, _ = echo_pass(ham, options, theta_c, drives_c, final_state,
                                           cotangents.astype(drives_c.dtype))
    grad_theta = jax.tree_util.tree_map(lambda g, t: g.astype(jnp.result_type(t)), grad_theta, theta)
    return grad_theta, grad_drives.astype(drives.dtype)


_rhel_core.defvjp(_rhel_forward, _rhel_backward)


# --- a core that starts from a given state (time chunks) -----------------------------------------

def hamiltonian_core_with_state(ham: SeparableHamiltonian, options: CoreOptions, theta, drives, initial_state):
    """Positions (L, N, P) and final state (φ, π) of the HRU started from ``initial_state`` (φ, π).

    For running a sequence in time chunks (``CoreOptions.block_chunk``): the final state of one chunk
    is the initial state of the next, differentiable both ways. Under RHEL a chunk's echo starts from
    the chunk's final state, nudged by the final state's cotangent handed over by the next chunk's echo
    (``echo_pass_sequential``), and returns the initial state's cotangent. Over a whole sequence this
    is the single echo exactly for the linear HRU; for a nonlinear HRU the echo's mean restarts from
    the forward state at every chunk boundary, which changes the estimate at O(ε²) (both tend to
    BPTT as ε → 0). The state is carried in the core's compute dtype; positions come back in the
    drives' dtype. Sequential scan, float integrator.
    """
    if options.fixed_point:
        raise ValueError("a core with an initial state (time chunks, block_chunk) needs integrator='float'")
    if options.scan == "parallel":
        raise ValueError("a core with an initial state (time chunks, block_chunk) needs a sequential scan; "
                         "got scan='parallel'")
    if options.algo == "rhel":
        return _rhel_core_with_state(ham, options, theta, drives, initial_state)
    return _run_from_state(ham, options, theta, drives, initial_state)


def _run_from_state(ham, options, theta, drives, initial_state):
    """The forward pass of ``hamiltonian_core_with_state`` in the compute dtype; positions in the drives'."""
    theta_c, drives_c = to_compute_dtype(options, theta, drives)
    initial_c = tuple(s.astype(drives_c.dtype) for s in initial_state)
    positions, final_state = run_leapfrog(ham, theta_c, drives_c, *initial_c)
    return positions.astype(drives.dtype), final_state


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _rhel_core_with_state(ham, options, theta, drives, initial_state):
    return _run_from_state(ham, options, theta, drives, initial_state)


def _rhel_with_state_forward(ham, options, theta, drives, initial_state):
    positions, final_state = _run_from_state(ham, options, theta, drives, initial_state)
    # Residuals: the parameters, the drives and the final state, as in _rhel_forward.
    return (positions, final_state), (theta, drives, final_state, initial_state)


def _rhel_with_state_backward(ham, options, residuals, cotangents):
    theta, drives, final_state, initial_state = residuals
    position_cotangents, final_state_cotangent = cotangents
    theta_c, drives_c = to_compute_dtype(options, theta, drives)
    final_state_cotangent = tuple(c.astype(drives_c.dtype) for c in final_state_cotangent)
    grad_theta, grad_drives, _, grad_initial = echo_pass_sequential(
        ham, options, theta_c, drives_c, final_state, position_cotangents.astype(drives_c.dtype),
        final_state_cotangent)
    grad_theta = jax.tree_util.tree_map(lambda g, t: g.astype(jnp.result_type(t)), grad_theta, theta)
    grad_initial = tuple(g.astype(s.dtype) for g, s in zip(grad_initial, initial_state))
    return grad_theta, grad_drives.astype(drives.dtype), grad_initial


_rhel_core_with_state.defvjp(_rhel_with_state_forward, _rhel_with_state_backward)


# --- diagnostics ------------------------------------------------------------------------------------

def retrace_error(ham: SeparableHamiltonian, theta, drives, options: CoreOptions | None = None) -> jax.Array:
    """Run forward, flip the momentum, echo with ε = 0: relative distance from the zero initial state.

    |echo end state| / |forward final state| (Frobenius norms over batch and channels); rounding
    only, in exact arithmetic it is 0. Computed in the core's dtype (``options.compute_dtype``).
    With ``integrator="fixed_point"`` the echo is bit-exact and this is exactly 0.0.
    """
    options = CoreOptions() if options is None else options
    theta, drives = to_compute_dtype(options, theta, drives)
    positions, final_state = _core_positions_and_state(ham, options, theta, drives)
    zero_cotangents = jnp.zeros_like(positions)
    _, _, (end_position, end_momentum) = echo_pass(ham, options, theta, drives, final_state,
                                                   zero_cotangents)
    if options.fixed_point:
        final_state = tuple(from_fixed(x, options.fraction_bits) for x in final_state)
    final_norm = jnp.sqrt(jnp.sum(final_state[0] ** 2) + jnp.sum(final_state[1] ** 2))
    end_norm = jnp.sqrt(jnp.sum(end_position**2) + jnp.sum(end_momentum**2))
    return end_norm / final_norm
