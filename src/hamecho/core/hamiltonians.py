"""Separable Hamiltonians H = T(π; θ) + V(φ; θ, u) and the time-reversal contract.

A Hamiltonian here is three plain JAX functions of ONE sample (no batch axis):

    kinetic(theta, momentum)           momentum (P,)            -> energy, () or (P,)
    potential(theta, position, drive)  position (P,), drive (U,) -> energy, () or (P,)
    step_size(theta)                                              -> δ,      () or (P,)

``theta`` is any pytree of arrays (the raw trainable parameters: any reparameterisation such as
``A = relu(a)`` happens inside these functions, so autodiff of the energies covers it). Every force
and every parameter gradient used by the integrator and by RHEL is ``jax.grad`` of these energies.

Energies may be returned per channel (shape (P,)); then channel i of the energy may depend on channel
i of the state only, and δ may be per channel. A scalar energy couples channels freely, and then δ
must be a scalar: with per-channel steps and a coupled potential the leapfrog is no longer
symplectic in the canonical sense and RHEL would not equal BPTT.

The time-reversal contract: T must be even in π (T(−π) = T(π)), so that flipping the momentum and
running the same step retraces the trajectory. ``check_even_in_momentum`` tests it numerically (for
these energies and for the continuous-time systems of ``hamecho.continuous`` alike).

Affine Hamiltonians. A Hamiltonian may declare that its leapfrog step is an affine map of the state by
giving ``affine_stiffness``: then T = ½|π|² and V = ½Σᵢ Aᵢφᵢ² − φ·u per channel with A =
``affine_stiffness(θ)`` (shape (P,)) and the drive u of the state's size. ``AffineLeapfrog`` (the
parallel scan) runs exactly those; ``validate_hamiltonian`` checks the declaration on random states.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PyTree

# Linear HRU stability: the per-channel leapfrog matrix has eigenvalues on the unit circle iff
# δ²A < 4. A is clipped to at most STABILITY_MARGIN · 4 / δ² (see ``linear_stiffness``).
STABILITY_MARGIN = 0.999


@dataclass(frozen=True)
class SeparableHamiltonian:
    """H(φ, π; θ, u) = T(π; θ) + V(φ; θ, u) with step size δ(θ); see the module docstring.

    Instances are hashable (they are used as static arguments of jitted and custom-VJP functions):
    build them from module-level functions, not fresh closures, to keep compilation caches warm.
    """

    kinetic: Callable[[PyTree, jax.Array], jax.Array]
    potential: Callable[[PyTree, jax.Array, jax.Array], jax.Array]
    step_size: Callable[[PyTree], jax.Array]
    name: str = "generic"
    # Declares the step affine (see the module docstring): θ -> stiffness A, shape (P,). None: not affine.
    affine_stiffness: Callable[[PyTree], jax.Array] | None = None

    @property
    def is_affine(self) -> bool:
        """True when the Hamiltonian declares T = ½|π|², V = ½Σ Aᵢφᵢ² − φ·u (``affine_stiffness``)."""
        return self.affine_stiffness is not None

    # --- derivatives, one sample ------------------------------------------------------------
    def velocity(self, theta: PyTree, momentum: jax.Array) -> jax.Array:
        """∂T/∂π, shape (P,)."""
        return jax.grad(lambda p: jnp.sum(self.kinetic(theta, p)))(momentum)

    def force(self, theta: PyTree, position: jax.Array, drive: jax.Array) -> jax.Array:
        """−∂V/∂φ, shape (P,)."""
        return -jax.grad(lambda q: jnp.sum(self.potential(theta, q, drive)))(position)

    def step_energy(self, theta, half_position, momentum_before, momentum_after, drive) -> jax.Array:
        """E = Σ δ·[V(φ½) + ½(T(π_before) + T(π_after))] of one leapfrog step (a scalar).

        ∇θE and ∇uE at the echo's states are the per-step RHEL estimates (spec §3); δ(θ) inside
        E gives the step size its gradient with no special case.
        """
        step = self.step_size(theta)
        energy = self.potential(theta, half_position, drive) + 0.5 * (
            self.kinetic(theta, momentum_before) + self.kinetic(theta, momentum_after)
        )
        return jnp.sum(step * energy)


def _per_sample(fn: Callable, n_batch_args: int) -> Callable:
    """vmap ``fn(theta, *args)`` over a leading batch axis of its last ``n_batch_args`` args."""
    return jax.vmap(fn, in_axes=(None,) + (0,) * n_batch_args)


def batched_velocity(ham: SeparableHamiltonian, theta, momentum):
    """∂T/∂π for momentum of shape (N, P)."""
    return _per_sample(ham.velocity, 1)(theta, momentum)


def batched_force(ham: SeparableHamiltonian, theta, position, drive):
    """−∂V/∂φ for position (N, P) and drive (N, U)."""
    return _per_sample(ham.force, 2)(theta, position, drive)


def validate_hamiltonian(ham: SeparableHamiltonian, theta: PyTree, state_size: int, drive_size: int,
                         *, seed: int = 0, trials: int = 8) -> None:
    """Check the contract on random states; raise ``ValueError`` naming what is wrong.

    - T(−π) = T(π) (time-reversal symmetry; without it the echo cannot retrace the forward pass);
    - energy shapes are () or (P,), and a per-channel δ comes with per-channel energies.
    """
    rng = np.random.default_rng(seed)
    dtype = jnp.result_type(*jax.tree_util.tree_leaves(theta)) if jax.tree_util.tree_leaves(theta) \
        else jnp.float32
    momentum = jnp.asarray(rng.normal(size=(trials, state_size)), dtype)
    position = jnp.asarray(rng.normal(size=(trials, state_size)), dtype)
    drive = jnp.asarray(rng.normal(size=(trials, drive_size)), dtype)

    tolerance = 1e-5 if dtype == jnp.float32 else 1e-10
    check_even_in_momentum(jax.vmap(ham.kinetic, in_axes=(None, 0)), theta, momentum, tolerance=tolerance,
                           what=f"kinetic energy of Hamiltonian {ham.name!r}", formula="T(π)")

    step = jnp.asarray(ham.step_size(theta))
    energy_shapes = {
        "kinetic": jax.eval_shape(ham.kinetic, theta, momentum[0]).shape,
        "potential": jax.eval_shape(ham.potential, theta, position[0], drive[0]).shape,
    }
    for which, shape in energy_shapes.items():
        if shape not in ((), (state_size,)):
            raise ValueError(f"{which} energy of {ham.name!r} must return shape () or ({state_size},), "
                             f"got {shape}")
        if step.shape == (state_size,) and shape == () and state_size > 1:
            raise ValueError(
                f"{which} energy of {ham.name!r} returns a scalar but the step size is per channel "
                f"(shape {step.shape}); return per-channel energies of shape ({state_size},) or use "
                "a scalar step size")
    if step.shape not in ((), (state_size,)):
        raise ValueError(f"step size of {ham.name!r} must have shape () or ({state_size},), got {step.shape}")
    if ham.is_affine:
        _check_affine_declaration(ham, theta, position, momentum, drive, tolerance)


def check_even_in_momentum(energy: Callable, theta, momenta, *, tolerance: float, what: str, formula: str) -> None:
    """Raise ``ValueError`` unless ``energy(theta, π) == energy(theta, −π)`` on the sample momenta.

    ``energy`` maps (theta, momenta of shape (S, ...)) to S energies (or per-channel energies); the
    asymmetry max|E(π) − E(−π)| is measured relative to max(max|E|, 1). Shared by the HRU energies
    (``validate_hamiltonian``) and the continuous-time systems (``hamecho.continuous``).
    """
    plus, minus = energy(theta, momenta), energy(theta, -momenta)
    scale = jnp.maximum(jnp.maximum(jnp.max(jnp.abs(plus)), jnp.max(jnp.abs(minus))), 1.0)
    asymmetry = float(jnp.max(jnp.abs(plus - minus)) / scale)
    if not np.isfinite(asymmetry) or asymmetry > tolerance:
        flipped = formula.replace("π", "−π")
        raise ValueError(
            f"{what} is not time-reversal symmetric: it is not even in the momentum (max |{formula} − {flipped}| / "
            f"max|{formula[0]}| = {asymmetry:.3g} on random states, allowed ≤ {tolerance:g}). RHEL needs "
            f"{flipped} = {formula}: no odd powers of π and no φ·π cross terms.")


def _check_affine_declaration(ham, theta, position, momentum, drive, tolerance) -> None:
    """The declared affine form must be the energies' own: ∂T/∂π = π and −∂V/∂φ = −Aφ + u."""
    if drive.shape[-1] != position.shape[-1]:
        raise ValueError(f"Hamiltonian {ham.name!r} declares itself affine, which needs a drive of the state's "
                         f"size {position.shape[-1]}; got {drive.shape[-1]}")
    stiffness = ham.affine_stiffness(theta)
    checks = (("∂T/∂π", batched_velocity(ham, theta, momentum), momentum),
              ("−∂V/∂φ", batched_force(ham, theta, position, drive), -stiffness * position + drive))
    for which, actual, declared in checks:
        gap = float(jnp.max(jnp.abs(actual - declared)) / jnp.maximum(jnp.max(jnp.abs(declared)), 1.0))
        if not gap <= 100 * tolerance:
            raise ValueError(f"Hamiltonian {ham.name!r} declares itself affine (affine_stiffness) but its {which} "
                             f"differs from the declared form π, −Aφ + u by {gap:.3g} (relative) on random states")


# --- the paper's two energies -----------------------------------------------------------------

def quadratic_kinetic(theta, momentum):
    """T = ½π² per channel (unit masses)."""
    del theta
    return 0.5 * momentum**2


def linear_step_size(theta):
    """δ = sigmoid(steps) ∈ (0, 1), per channel."""
    return jax.nn.sigmoid(theta["steps"])


def linear_stiffness(theta):
    """A = min(relu(a), 0.999·4/δ²): non-negative, and stable by construction (δ²A < 4).

    Where the clip is active A gets no gradient through ``a`` and the bound moves with δ; at the
    paper's initialisation (a ~ U[0,1), δ < 0.74) the clip is far away (4/δ² > 7).
    """
    step = linear_step_size(theta)
    return jnp.minimum(jax.nn.relu(theta["a"]), STABILITY_MARGIN * 4.0 / step**2)


def linear_potential(theta, position, drive):
    """V = ½Aφ² − φ·(Bu) per channel; ``drive`` is Bu, shape (P,)."""
    return 0.5 * linear_stiffness(theta) * position**2 - position * drive


LINEAR_HAMILTONIAN = SeparableHamiltonian(
    kinetic=quadratic_kinetic, potential=linear_potential, step_size=linear_step_size,
    name="linear", affine_stiffness=linear_stiffness,
)


def nonlinear_step_size(theta):
    """δ = exp(log_step), a positive scalar; trained under RHEL exactly as under BPTT."""
    return jnp.exp(theta["log_step"])


def log_cosh(x):
    """log cosh x, stable for large |x|."""
    ax = jnp.abs(x)
    return ax + jnp.log1p(jnp.exp(-2.0 * ax)) - jnp.log(2.0)


def nonlinear_potential(theta, position, drive):
    """V = (α/2)φ² + log cosh(wφ + Bu + b)/w per channel, so −∂V/∂φ = −αφ − tanh(wφ + Bu + b)."""
    w, b, alpha = theta["w"], theta["b"], theta["alpha"]
    return 0.5 * alpha * position**2 + log_cosh(w * position + drive + b) / w


NONLINEAR_HAMILTONIAN = SeparableHamiltonian(
    kinetic=quadratic_kinetic, potential=nonlinear_potential, step_size=nonlinear_step_size,
    name="nonlinear",
)
