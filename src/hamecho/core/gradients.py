"""Gradient methods: how a Hamiltonian core is differentiated, and RHEL's ± estimator.

Four strategy objects, each a small hashable value under :class:`AbstractGradient`:

- ``RHEL(eps=0.1, estimator="two_sided", difference="auto")``: the echo (spec §3). The forward pass keeps
  only the parameters, the drives and the final state; the backward pass runs the ±ε echoes with the
  integrator (each integrator carries its own echo) and returns
  ∂L/∂θ = −(Σ_k ∇θE(echo+ε) − Σ_k ∇θE(echo−ε)) / (2ε) and ∂L/∂u_k likewise, with
  E = δ·[V(φ½) + ½(T(π_before) + T(π_after))] at the echo's half-step states.
  ``estimator="one_sided"`` echoes with +ε and 0 and divides by ε.
- ``BPTT(checkpoint_every=None)``: autodiff through the integrator's scan; with ``checkpoint_every=K``
  only every K-th state is kept and each stretch of K steps is recomputed in the backward pass.
- ``PhysicsAware(twin=None)``: physics-aware training (Wright et al., Nature 601, 549–555, 2022): the
  forward pass on a device (``hamecho.physical``), the backward pass through a differentiable *twin*
  of it, each step's Jacobian taken at the device's *measured* state before that step
  (``hamecho.core.engine``). On an exact twin of an ideal device it is BPTT.
- ``SPSA(n_perturbations=1, scale=1e-3, seed=0)``: simultaneous-perturbation stochastic approximation
  (Spall, IEEE Trans. Automatic Control 37, 332–341, 1992): loss evaluations only. Every array whose
  gradient passes through a core is perturbed at once by ±c·Δ, Δ a vector of independent ±1 signs, and
  ĝ = (L(θ + cΔ) − L(θ − cΔ))/(2c) · Δ, averaged over ``n_perturbations`` draws (:func:`spsa_estimate`;
  the model-level part is ``hamecho.nn.spsa``). Arrays after the last core get their exact gradient.

Each strategy says what one update costs on a device (:meth:`AbstractGradient.passes_per_step`): the
number of runs of the dynamics over the whole sequence, per core.

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
from typing import Any

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


def echo_pairs(integrator) -> int:
    """How many echo pairs an RHEL estimate on ``integrator`` averages (a device's ``echo_runs()``; else 1)."""
    runs = getattr(integrator, "echo_runs", None)
    return 1 if runs is None else int(runs())


@dataclass(frozen=True)
class AbstractGradient:
    """Base class of the gradient methods. Instances are hashable values (static under ``jax.jit``)."""

    def passes_per_step(self, integrator=None, cores: int = 1) -> int:
        """Runs of the dynamics (device passes: one run over the whole sequence from a given state) that one
        gradient costs for ``cores`` cores run by ``integrator`` (None: a digital integrator). Without
        recomputation: ``RecomputeBlocks`` runs every core's forward pass once more."""
        check_positive_int("cores", cores)
        return cores * self.passes_per_core(integrator)

    def passes_per_core(self, integrator=None) -> int:
        raise NotImplementedError


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

    def passes_per_core(self, integrator=None) -> int:
        """One forward pass and two echoes; each further echo pair a device averages (``repeats``) comes
        after a fresh forward pass: 3 per pair."""
        return 3 * echo_pairs(integrator)


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

    def passes_per_core(self, integrator=None) -> int:
        """The forward pass (the backward pass is digital); with checkpointing each stretch is run again."""
        return 1 if self.checkpoint_every is None else 2


@dataclass(frozen=True)
class PhysicsAware(AbstractGradient):
    """Physics-aware training (Wright et al. 2022): forward on the device, backward through its twin.

    The device (``integrator=``, a ``hamecho.physical`` device) runs the forward pass and reports the
    state it measured before every step; the backward pass is backpropagation through ``twin``, one step
    at a time, each step's vector–Jacobian product taken at the *measured* state (not at the twin's own
    trajectory) and the loss's cotangents at the *measured* outputs. twin: an integrator BPTT can
    differentiate that starts from a given state (``hamecho.Leapfrog()``,
    ``hamecho.physical.DampedLeapfrog(damping=γ)``, ``hamecho.physical.ExactFlow(series_resistance=R)``,
    ``hamecho.physical.SimulatedTwin(...)``); None: the device's own (``device.twin()``, the model it was
    built to implement). Cost: one device pass per core and the twin's backward pass in digital compute.
    """

    twin: Any = None

    def __post_init__(self):
        from .integrators import AbstractIntegrator  # here: integrators imports this module

        if self.twin is not None and not isinstance(self.twin, AbstractIntegrator):
            raise ValueError("twin must be None (the device's own) or an integrator BPTT can differentiate, such "
                             f"as hamecho.Leapfrog() or hamecho.physical.ExactFlow(); got {self.twin!r}")

    def passes_per_core(self, integrator=None) -> int:
        """The forward pass on the device; the backward pass is the twin's, digital."""
        return 1


@dataclass(frozen=True)
class SPSA(AbstractGradient):
    """Simultaneous-perturbation stochastic approximation (Spall 1992): gradients from loss evaluations.

    n_perturbations: the number q of perturbation pairs averaged (each costs two loss evaluations: two
    device passes per core); scale: the perturbation size c (absolute, in parameter units; bias O(c²),
    noise of the device divided by c); seed: the root of the perturbations, folded with the call's
    ``key`` (when given) and a digest of the parameters and the batch, so that every step draws fresh
    signs and a repeated call the same ones. What is perturbed: every trainable array whose gradient
    passes through a core (``hamecho.nn.hssm.through_cores``); the arrays after the last core (its
    readout, GLU and the head) are digital and get their exact gradient from the same forward pass.
    """

    n_perturbations: int = 1
    scale: float = 1e-3
    seed: int = 0

    def __post_init__(self):
        check_positive_int("n_perturbations", self.n_perturbations)
        if not (isinstance(self.scale, (int, float)) and not isinstance(self.scale, bool)
                and math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"scale must be a finite number > 0 (the perturbation size c); got {self.scale!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer ≥ 0; got {self.seed!r}")

    def passes_per_core(self, integrator=None) -> int:
        """The unperturbed forward pass (the loss, and the exact gradient after the last core) and two
        passes per perturbation."""
        return 1 + 2 * self.n_perturbations


def spsa_estimate(loss, params, spsa: SPSA, key):
    """Spall's estimate of ∇loss at ``params`` (a pytree of arrays; None leaves are left out).

    For each of the q = ``spsa.n_perturbations`` draws, Δ has independent ±1 entries (Rademacher, from
    ``fold_in(key, draw)``) and ĝ = (loss(params + cΔ) − loss(params − cΔ)) / (2c) · Δ (1/Δᵢ = Δᵢ); the
    mean of the q estimates is returned, with the structure of ``params``. Unbiased up to O(c²); for a
    linear loss E‖ĝ − ∇‖² = (d − 1)·‖∇‖²/q with d the number of perturbed entries.
    """
    leaves, treedef = jax.tree_util.tree_flatten(params)
    scale = spsa.scale

    def signs(draw):
        keys = jax.random.split(jax.random.fold_in(key, draw), len(leaves))
        return [jax.random.rademacher(k, leaf.shape, leaf.dtype) for k, leaf in zip(keys, leaves)]

    def shifted(delta, sign):
        return jax.tree_util.tree_unflatten(treedef, [leaf + sign * scale * d for leaf, d in zip(leaves, delta)])

    def one_draw(total, draw):
        delta = signs(draw)
        difference = (loss(shifted(delta, 1.0)) - loss(shifted(delta, -1.0))) / (2.0 * scale)
        return [t + difference.astype(t.dtype) * d for t, d in zip(total, delta)], None

    total, _ = jax.lax.scan(one_draw, [jnp.zeros_like(leaf) for leaf in leaves], jnp.arange(spsa.n_perturbations))
    return jax.tree_util.tree_unflatten(treedef, [t / spsa.n_perturbations for t in total])


def tree_digest(*trees) -> jax.Array:
    """A uint32 hash of the arrays in ``trees`` (their bits): fresh SPSA signs for fresh parameters or data."""
    digest = jnp.uint32(0x811C9DC5)
    for leaf in jax.tree_util.tree_leaves(trees):
        leaf = jnp.ravel(jnp.asarray(leaf))
        if leaf.dtype == jnp.bool_ or leaf.dtype.itemsize < 4:
            words = leaf.astype(jnp.uint32)
        else:
            words = jnp.ravel(jax.lax.bitcast_convert_type(leaf, jnp.uint32))
        odd = jnp.arange(words.shape[0], dtype=jnp.uint32) * jnp.uint32(2) + jnp.uint32(1)
        weights = odd * jnp.uint32(0x9E3779B1)
        digest = (digest ^ jnp.sum(words * weights, dtype=jnp.uint32)) * jnp.uint32(16777619)
    return digest


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
