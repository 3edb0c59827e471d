"""Gradient methods: how a Hamiltonian core is differentiated, and RHEL's ± estimator.

Two strategy objects, each a small hashable value under :class:`AbstractGradient`:

- ``RHEL(eps=0.1, estimator="two_sided", difference="auto")``: the echo (spec §3). The forward pass keeps
  only the parameters, the drives and the final state; the backward pass runs the ±ε echoes with the
  integrator (each integrator carries its own echo) and returns
  ∂L/∂θ = −(Σ_k ∇θE(echo+ε) − Σ_k ∇θE(echo−ε)) / (2ε) and ∂L/∂u_k likewise, with
  E = δ·[V(φ½) + ½(T(π_before) + T(π_after))] at the echo's half-step states.
  ``estimator="one_sided"`` echoes with +ε and 0 and divides by ε.
- ``BPTT(checkpoint_every=None)``: autodiff through the integrator's scan; with ``checkpoint_every=K``
  only every K-th state is kept and each stretch of K steps is recomputed in the backward pass.

Numerical arrangement of the echo. The two echoes are carried as their mean m = (Φ₊ + Φ₋)/2 and
half-difference h = (Φ₊ − Φ₋)/2: the same computation (Φ± = m ± h) that keeps h at full relative
precision instead of as the difference of two rounded states (in float32 over tens of thousands of
steps the two echoes otherwise differ by less than the rounding they accumulate). Differences of
functions f(m + h) − f(m − h) follow the *difference rule* (``hamecho.core.choices.difference_rule``
resolves ``"auto"``):

- ``"quadrature"``: ½∫₋₁¹ Df(m + t·h)[h] dt by the two-point Gauss–Legendre rule with forward-mode
  derivatives. No cancellation however small h is; exact when the energies are polynomials of degree
  ≤ 4 in the state (an affine HRU); otherwise its relative error is O(|h|⁴), far below RHEL's own O(ε²).
- ``"direct"``: evaluate at both echoes and subtract, as a physical system would.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp

ESTIMATORS = ("two_sided", "one_sided")
DIFFERENCES = ("auto", "quadrature", "direct")


def check_one_of(name: str, value, allowed) -> None:
    """``ValueError`` unless ``value`` is one of ``allowed`` (the message lists them)."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def check_positive_int(name: str, value, what: str = "") -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive integer{what}; got {value!r}")


@dataclass(frozen=True)
class AbstractGradient:
    """Base class of the gradient methods. Instances are hashable values (static under ``jax.jit``)."""


@dataclass(frozen=True)
class RHEL(AbstractGradient):
    """Recurrent Hamiltonian Echo Learning: gradients from two nudged echoes (see the module docstring).

    eps: nudge strength ε > 0 (bias O(ε²) two-sided, O(ε) one-sided; none for an affine HRU);
    estimator: ``"two_sided"`` (±ε) or ``"one_sided"`` (+ε and 0);
    difference: ``"auto"``, ``"quadrature"`` or ``"direct"`` (how the two echoes are differenced).
    """

    eps: float = 0.1
    estimator: str = "two_sided"
    difference: str = "auto"

    def __post_init__(self):
        if not (isinstance(self.eps, (int, float)) and not isinstance(self.eps, bool)
                and math.isfinite(self.eps) and self.eps > 0):
            raise ValueError(f"eps must be a finite number > 0; got {self.eps!r}")
        check_one_of("estimator", self.estimator, ESTIMATORS)
        check_one_of("difference", self.difference, DIFFERENCES)

    def nudge_weights(self) -> tuple[float, float]:
        """How the nudge ε·g splits into the mean and the half-difference of the two echoes."""
        return (0.0, 1.0) if self.estimator == "two_sided" else (0.5, 0.5)


@dataclass(frozen=True)
class BPTT(AbstractGradient):
    """Backpropagation through time: autodiff through the integrator's scan.

    checkpoint_every: None (keep every state) or K > 0: keep the state every K steps and recompute each
    stretch in the backward pass (one more forward pass; memory O(L/K + K) per layer instead of O(L)).
    """

    checkpoint_every: int | None = None

    def __post_init__(self):
        if self.checkpoint_every is not None:
            check_positive_int("checkpoint_every", self.checkpoint_every, " or None")


# --- differences of a function evaluated on the two echoes ------------------------------------

_GAUSS_NODE = 1.0 / math.sqrt(3.0)


def _tree_axpy(a, x, y):
    return jax.tree_util.tree_map(lambda xi, yi: yi + a * xi, x, y)


def half_difference(fn, mean, half, rule: str):
    """(fn(mean + half) − fn(mean − half)) / 2 for pytrees ``mean``/``half`` by ``rule`` (module doc)."""
    if rule == "direct":
        plus, minus = fn(_tree_axpy(1.0, half, mean)), fn(_tree_axpy(-1.0, half, mean))
        return jax.tree_util.tree_map(lambda a, b: 0.5 * (a - b), plus, minus)
    # Two-point Gauss–Legendre on t ↦ Df(m + t·h)[h].
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


def per_sample_sums() -> bool:
    """Whether the cores sum the parameter gradient over time per sample, and over the batch once after the
    time loop, instead of over the batch at every step: on when JAX has more than one device.

    Why: with the batch split over devices (``hamecho.data_parallel``), a sum over the batch at every step
    of a scan is an all-reduce at every step (L of them per call, each a synchronisation of every device,
    over the network between machines); summed per sample it is one all-reduce after the loop. Off on
    one device, where the per-step sum is the recorded arithmetic (tests/golden, bit for bit). The two
    are the same sum in another order (tests/test_parallel.py compares them in float64).
    """
    return jax.device_count() > 1


def step_energy_gradients(ham, theta, states, drive, per_sample: bool = False):
    """∇θ Σ_n E_n and ∇_drive E_n for N samples.

    states = (half_position, momentum_before, momentum_after), each (N, P); drive (N, U).
    Returns (gradient with theta's structure, drive gradient (N, U)); ``per_sample``: the θ part of each
    sample, with a leading N axis (``per_sample_sums``).
    """
    half_position, momentum_before, momentum_after = states
    if per_sample:
        one = jax.grad(ham.step_energy, argnums=(0, 4))
        return jax.vmap(one, in_axes=(None, 0, 0, 0, 0))(theta, half_position, momentum_before, momentum_after,
                                                          drive)
    energies = jax.vmap(ham.step_energy, in_axes=(None, 0, 0, 0, 0))
    total = lambda th, u: jnp.sum(energies(th, half_position, momentum_before, momentum_after, u))
    return jax.grad(total, argnums=(0, 1))(theta, drive)


def nudges_after_each_step(nudges):
    """The nudge that follows the echo step undoing forward step k: nudges[k − 1], none after step 0."""
    return jnp.concatenate([jnp.zeros_like(nudges[:1]), nudges[:-1]], axis=0)


def echo_energy_half_difference(ham, theta, plus, minus, drive, rule: str, half=None, per_sample: bool = False):
    """½(∇E(plus) − ∇E(minus)) of one step's energy at the states of two separately run echoes.

    plus, minus: (half_position, momentum_before, momentum_after) of the +ε and the −ε (or free) echo,
    each (N, P); drive (N, U). ``"direct"`` evaluates at both and subtracts (as a physical system would);
    the quadrature rule integrates around minus + half, with ``half`` the states' half-difference when
    the caller knows it more exactly than (plus − minus)/2 (the fixed-point grid's integers). Shared by
    the echoes that carry two states: ``FixedPointLeapfrog`` and the devices of ``hamecho.physical``.
    Returns (θ part, drive part (N, U)); ``per_sample``: the θ part per sample (:func:`step_energy_gradients`).
    """
    energy_grads = lambda states: step_energy_gradients(ham, theta, states, drive, per_sample)
    if rule == "direct":
        return jax.tree_util.tree_map(lambda a, b: 0.5 * (a - b), energy_grads(plus), energy_grads(minus))
    if half is None:
        half = tuple(0.5 * (a - b) for a, b in zip(plus, minus))
    mean = tuple(b + d for b, d in zip(minus, half))
    return half_difference(energy_grads, mean, half, rule)


def half_difference_span(rhel: RHEL) -> float:
    """w·ε, the nudge the echoes' half-difference carries: ε two-sided; ε/2 one-sided (Φ₋ is the free echo).
    The half-difference of the echoes' end states divided by it is the initial state's cotangent."""
    return rhel.nudge_weights()[1] * rhel.eps


def estimator_scale(rhel: RHEL) -> float:
    """What turns the echoes' summed half-differences into ∂L: −1/(w·ε) (:func:`half_difference_span`), that
    is −1/ε two-sided and −2/ε one-sided. Every echo scales by this (the floating-point, affine and
    fixed-point integrators, the devices)."""
    return -1.0 / half_difference_span(rhel)
