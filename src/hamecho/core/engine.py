"""The Hamiltonian core: drives (L, N, U) → positions (L, N, P), differentiated by BPTT or by RHEL's echo.

    hamiltonian_core(ham, theta, drives, gradient=RHEL(), integrator=None, initial_state=None)

``BPTT``: JAX differentiates through the integrator's scan (every ``checkpoint_every`` steps only, if
asked). ``RHEL``: one custom VJP. Its forward pass keeps only θ, the drives, the final state and the
initial state when one is given — nothing of size L·P — and its backward pass is :func:`echo_pass`:

    flip the final momentum; replay the drives backwards; after the step that lands on the mirror of
    state k−1, add ε·g_{k−1} to the momentum (g: the incoming cotangent of the positions);
    ∂L/∂θ  = −(Σ_k ∇θE(echo+ε) − Σ_k ∇θE(echo−ε)) / (2ε),   ∂L/∂u_k likewise,
    with E = δ·[V(φ½) + ½(T(π_before) + T(π_after))] at the echo's half-step states.

With an initial state (time chunks) the core returns (positions, final state); the final state's
cotangent nudges the start of the echo and the echo's end gives the initial state's cotangent. Each
integrator carries its own echo (``Leapfrog.echo``, ``AffineLeapfrog.echo``, ``FixedPointLeapfrog.echo``).
The integration runs in the integrator's compute dtype; positions come back in the drives' dtype.

``PhysicsAware``: one custom VJP. Its forward pass runs the device (``device.forward_measured``) and keeps
θ, the drives and the state the device measured before every step; its backward pass is
:func:`twin_backward`, the reverse-mode sweep of the twin with each step's vector–Jacobian product taken
at the measured state:

    λ_k ← λ_k + (g_k, 0);   (∂θ, ∂u_k, λ_{k−1}) ← vjp of (x ↦ twin step k from x) at x = measured x_{k−1}.

``SPSA``: the core runs forward only; its gradient comes from loss evaluations of the whole model
(``hamecho.nn.spsa``), so differentiating a core under it is refused.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from .choices import Choices, compute_dtype, difference_rule, integrator_for, physics_aware_twin
from .gradients import RHEL, SPSA, PhysicsAware
from .hamiltonians import SeparableHamiltonian
from .integrators import AbstractIntegrator, EchoResult


def to_compute_dtype(integrator: AbstractIntegrator, theta, drives):
    """theta and drives cast to the dtype the integrator computes in (a no-op when they already are)."""
    compute = compute_dtype(integrator.dtype, drives.dtype, who=integrator.label())
    widen = lambda a: a.astype(compute) if jnp.issubdtype(jnp.result_type(a), jnp.floating) else a
    return jax.tree_util.tree_map(widen, theta), drives.astype(compute)


def echo_pass(ham: SeparableHamiltonian, rhel: RHEL, integrator: AbstractIntegrator, theta, drives, final_state,
              cotangents, final_state_cotangent=None) -> EchoResult:
    """The ±ε echo from ``final_state`` nudged by ``cotangents`` (L, N, P): RHEL's estimates (``EchoResult``).

    theta and drives in the integrator's compute dtype; ``final_state_cotangent`` (λ_φ, λ_π) when the
    final state is itself differentiated (time chunks). The difference rule is resolved here
    (``choices.difference_rule``), the echo itself is the integrator's.
    """
    rule = difference_rule(rhel)
    return integrator.echo(ham, rhel, rule, theta, drives, final_state, cotangents, final_state_cotangent)


def run_core(ham: SeparableHamiltonian, choices: Choices, theta, drives, initial_state=None):
    """Positions (L, N, P) of the HRU driven by ``drives`` (L, N, U), from zero or ``initial_state``.

    Returns positions, or (positions, final state (φ, π)) when ``initial_state`` is given. The
    integrator is ``choices.integrator``, resolved for ``ham`` (``choices.integrator_for``).
    """
    integrator = integrator_for(ham, choices, initial_state=initial_state is not None)
    gradient = choices.gradient
    if isinstance(gradient, RHEL):
        return _rhel_core(ham, gradient, integrator, theta, drives, initial_state)
    if isinstance(gradient, PhysicsAware):
        return _physics_aware_core(ham, physics_aware_twin(gradient, integrator), integrator, theta, drives)
    if isinstance(gradient, SPSA):
        return _loss_only_core(ham, integrator, theta, drives, initial_state)
    with jax.named_scope("core_cast"):
        theta_c, drives_c = to_compute_dtype(integrator, theta, drives)
    if gradient.checkpoint_every is not None:
        with jax.named_scope("core_forward"):
            positions = integrator.forward_checkpointed(ham, theta_c, drives_c, gradient.checkpoint_every)
        with jax.named_scope("core_cast"):
            return positions.astype(drives.dtype)
    with jax.named_scope("core_forward"):
        positions, final_state = integrator.forward(ham, theta_c, drives_c, initial_state)
    with jax.named_scope("core_cast"):
        positions = positions.astype(drives.dtype)
    return _outputs(positions, final_state, initial_state)


def hamiltonian_core(ham: SeparableHamiltonian, theta, drives, *, gradient=None, integrator=None,
                     initial_state=None):
    """``run_core`` with the choices given as keywords: gradient (default ``RHEL()``), integrator (default:
    per Hamiltonian, see ``hamecho.core.choices``) and an optional initial state (φ, π), each (N, P)."""
    choices = Choices(gradient=gradient, integrator=integrator)
    return run_core(ham, choices, theta, drives, initial_state)


def _outputs(positions, final_state, initial_state):
    return positions if initial_state is None else (positions, final_state)


def _forward_pass(ham, integrator, theta, drives, initial_state):
    # named scopes: what the profiler reports the time under (docs/performance.md); no effect on the arithmetic
    with jax.named_scope("core_cast"):
        theta_c, drives_c = to_compute_dtype(integrator, theta, drives)
    with jax.named_scope("core_forward"):
        positions, final_state = integrator.forward(ham, theta_c, drives_c, initial_state)
    with jax.named_scope("core_cast"):
        return positions.astype(drives.dtype), final_state


@partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _rhel_core(ham, rhel, integrator, theta, drives, initial_state):
    return _outputs(*_forward_pass(ham, integrator, theta, drives, initial_state), initial_state)


def _rhel_forward(ham, rhel, integrator, theta, drives, initial_state):
    positions, final_state = _forward_pass(ham, integrator, theta, drives, initial_state)
    # Residuals: the parameters, the drives (in their own dtype), the final state and the initial state
    # (None from zero). Nothing else of length L.
    return _outputs(positions, final_state, initial_state), (theta, drives, final_state, initial_state)


def _rhel_backward(ham, rhel, integrator, residuals, cotangents):
    theta, drives, final_state, initial_state = residuals
    position_cotangents, final_state_cotangent = (cotangents, None) if initial_state is None else cotangents
    with jax.named_scope("core_cast"):
        theta_c, drives_c = to_compute_dtype(integrator, theta, drives)
        if final_state_cotangent is not None:
            final_state_cotangent = tuple(c.astype(drives_c.dtype) for c in final_state_cotangent)
        position_cotangents = position_cotangents.astype(drives_c.dtype)
    with jax.named_scope("core_echo"):
        echo = echo_pass(ham, rhel, integrator, theta_c, drives_c, final_state, position_cotangents,
                         final_state_cotangent)
    with jax.named_scope("core_cast"):
        grad_theta = jax.tree_util.tree_map(lambda g, t: g.astype(jnp.result_type(t)), echo.grad_theta, theta)
        grad_initial = None if initial_state is None else tuple(
            g.astype(s.dtype) for g, s in zip(echo.initial_cotangent, initial_state))
        return grad_theta, echo.grad_drives.astype(drives.dtype), grad_initial


_rhel_core.defvjp(_rhel_forward, _rhel_backward)


# --- physics-aware training: the device forward, the twin backward -----------------------------------

@partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _physics_aware_core(ham, twin, device, theta, drives):
    return _physics_aware_forward(ham, twin, device, theta, drives)[0]


def _physics_aware_forward(ham, twin, device, theta, drives):
    theta_c, drives_c = to_compute_dtype(device, theta, drives)
    positions, measured = device.forward_measured(ham, theta_c, drives_c)
    # Residuals: θ, the drives and the measured state before every step (2·L·N·P numbers: BPTT's own).
    return positions.astype(drives.dtype), (theta, drives, measured)


def _physics_aware_backward(ham, twin, device, residuals, cotangents):
    theta, drives, measured = residuals
    theta_c, drives_c = to_compute_dtype(twin, theta, drives)
    measured = tuple(m.astype(drives_c.dtype) for m in measured)
    grad_theta, grad_drives = twin_backward(ham, twin, theta_c, drives_c, measured, cotangents.astype(drives_c.dtype))
    grad_theta = jax.tree_util.tree_map(lambda g, t: g.astype(jnp.result_type(t)), grad_theta, theta)
    return grad_theta, grad_drives.astype(drives.dtype)


_physics_aware_core.defvjp(_physics_aware_forward, _physics_aware_backward)


def twin_backward(ham: SeparableHamiltonian, twin: AbstractIntegrator, theta, drives, measured, cotangents):
    """Backpropagation through ``twin`` with every step linearised at the measured state before it.

    measured: (φ_{k−1}, π_{k−1}) before each step k, each (L, N, P) (the zero state before step 0);
    cotangents: ∂L/∂φ_k (L, N, P). One step of the twin is ``twin.forward`` over one drive from the
    measured state. Returns (∂L/∂θ, ∂L/∂drives (L, N, U)).
    """
    def twin_step(th, position, momentum, drive):
        return twin.forward(ham, th, drive[None], (position, momentum))[1]

    def body(carry, inputs):
        grad_theta, adjoint_position, adjoint_momentum = carry
        cotangent, position, momentum, drive = inputs
        _, vjp = jax.vjp(twin_step, theta, position, momentum, drive)
        g_theta, adjoint_position, adjoint_momentum, g_drive = vjp((adjoint_position + cotangent, adjoint_momentum))
        return (jax.tree_util.tree_map(jnp.add, grad_theta, g_theta), adjoint_position, adjoint_momentum), g_drive

    zeros = jnp.zeros_like(cotangents[0])
    start = (jax.tree_util.tree_map(jnp.zeros_like, theta), zeros, zeros)
    (grad_theta, _, _), grad_drives = jax.lax.scan(body, start, (cotangents, *measured, drives), reverse=True)
    return grad_theta, grad_drives


# --- SPSA: the core forward, never differentiated ------------------------------------------------------

@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _loss_only_core(ham, integrator, theta, drives, initial_state):
    return _outputs(*_forward_pass(ham, integrator, theta, drives, initial_state), initial_state)


def _loss_only_forward(ham, integrator, theta, drives, initial_state):
    return _outputs(*_forward_pass(ham, integrator, theta, drives, initial_state), initial_state), None


def _loss_only_backward(ham, integrator, residuals, cotangents):
    raise ValueError("SPSA estimates gradients from loss evaluations of a whole model (hamecho.value_and_grad, "
                     "hamecho.train_step): a core cannot be differentiated under it; use gradient=hamecho.RHEL(), "
                     "hamecho.BPTT() or hamecho.PhysicsAware() to differentiate a core")


_loss_only_core.defvjp(_loss_only_forward, _loss_only_backward)


# --- diagnostics ------------------------------------------------------------------------------------

def relative_retrace_error(end_state, start_state, final_state) -> jax.Array:
    """How far a free echo missed: ‖end − mirror(start)‖ / ‖final state‖ (Frobenius norms).

    end_state: where the free (ε = 0) echo ended, in the echo's flipped coordinates; start_state: the
    forward pass's initial (φ, π), whose mirror is (φ, −π); final_state: the forward pass's final (φ, π).
    Rounding only: in exact arithmetic it is 0. The one meaning of "retrace error" in hamecho.
    """
    (end_q, end_p), (start_q, start_p), (final_q, final_p) = end_state, start_state, final_state
    gap = jnp.sqrt(jnp.sum((end_q - start_q) ** 2) + jnp.sum((end_p + start_p) ** 2))
    return gap / jnp.sqrt(jnp.sum(final_q**2) + jnp.sum(final_p**2))


def retrace_error(ham: SeparableHamiltonian, theta, drives, integrator: AbstractIntegrator | None = None
                  ) -> jax.Array:
    """Run forward from zero, flip the momentum, echo with ε = 0: :func:`relative_retrace_error`.

    Computed in the integrator's dtype (integrator None: ``AutoLeapfrog()``, the default for ``ham``);
    with ``FixedPointLeapfrog`` the echo is bit-exact and this is exactly 0.0.
    """
    integrator = integrator_for(ham, Choices(integrator=integrator))
    theta, drives = to_compute_dtype(integrator, theta, drives)
    positions, final_state = integrator.forward(ham, theta, drives)
    echo = echo_pass(ham, RHEL(), integrator, theta, drives, final_state, jnp.zeros_like(positions))
    final_state = integrator.state_as_float(final_state)
    zeros = jnp.zeros_like(final_state[0])
    return relative_retrace_error(echo.end_state, (zeros, zeros), final_state)
