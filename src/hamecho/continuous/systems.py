"""Continuous-time Recurrent Hamiltonian Echo Learning (RHEL).

A physical system is described by a time-reversal-symmetric Hamiltonian
``H(phi, pi, theta, u)`` (even in the momentum ``pi``), an input signal ``u(t)`` and a running
loss ``ell(phi, t)`` on positions only.  The state ``Phi = (phi, pi)`` obeys
``dPhi/dt = J grad H`` on ``t in [-T, 0]`` from ``Phi(-T) = (phi0, pi0)``; the objective is
``L = int_{-T}^0 ell(phi(t), t) dt``.

Three ways of computing ``dL/dtheta`` and ``dL/d(phi0, pi0)`` are provided:

* :func:`rhel_gradient` -- the Hamiltonian echo.  The final state is momentum-flipped and the
  *same* dynamics is run again for ``tau in [0, T]`` with inputs and losses replayed backwards,
  ``u(-tau)`` and ``ell(., -tau)``, and with the nudge ``-eps J grad ell`` (which pushes the
  momentum by ``+eps d ell/d phi``, evaluated on the echo itself).  Two echoes, at ``+eps`` and
  ``-eps``, give the two-sided estimator
  ``-(1/2eps) int (grad_theta H(echo+) - grad_theta H(echo-)) dtau`` and the initial-state
  gradient ``Sigma_x (Phi_echo+(T) - Phi_echo-(T)) / 2eps``.  Nothing but the final state and
  the input signal is needed; no Jacobian is ever formed.
* :func:`adjoint_gradient` -- the adjoint state method: the backward adjoint ODE
  ``dlambda/dtau = Hess H J^T lambda + grad ell`` integrated along the stored forward trajectory
  with the adjoint scheme of the forward integrator (Hessian-vector products only).
* :func:`autodiff_gradient` -- reverse-mode autodiff through the discretised forward pass.

Discretisation (what makes the three agree to round-off, not only as ``dt -> 0``)
---------------------------------------------------------------------------------
Time is cut into ``n_steps`` steps of ``dt = T / n_steps``; state ``k`` lives at
``t_k = -T + k dt``; step ``k -> k+1`` uses the input at its midpoint ``u(t_k + dt/2)``.  The
integral of the loss is the trapezoidal sum ``L = sum_k w_k ell(phi_k, t_k)`` with
``w_0 = w_N = dt/2`` and ``w_k = dt`` otherwise.

* ``separable=True`` (``H = T(pi) + V(phi)``): leapfrog / Stormer-Verlet as drift-kick-drift
  (``phi_h = phi + dt/2 dH/dpi(pi)``, ``pi' = pi - dt dH/dphi(phi_h)``,
  ``phi' = phi_h + dt/2 dH/dpi(pi')``).  The RHEL integrand for one step is ``dt`` times
  ``grad_theta`` of the step-averaged Hamiltonian ``(H(phi_h, pi) + H(phi_h, pi')) / 2``.
* ``separable=False``: the implicit midpoint rule ``Phi' = Phi + dt J grad H((Phi + Phi')/2)``,
  solved by ``implicit_iters`` unrolled fixed-point iterations (differentiable; with a
  contraction factor ``~ dt * Lip(grad H) / 2`` the default 30 iterations reach round-off for any
  reasonably resolved step).  The RHEL integrand is ``dt grad_theta H`` at the step midpoint.

Both integrators are symmetric and, for ``H`` even in ``pi``, reversible under the momentum flip:
the unnudged echo retraces the forward trajectory exactly in exact arithmetic.  The echo adds the
nudge ``+eps w_k d ell/d phi (phi_echo, t_k)`` to the momentum right after landing on the mirror
of state ``k`` (and at ``k = N`` before the first echo step).  With these choices the estimator
is the discrete RHEL of the integrator (the paper's Theorem 3.2 applied to it) and converges to
the gradient of the *discretised* loss -- i.e. to autodiff and to the discrete adjoint -- with an
``O(eps^2)`` bias, which is zero when the dynamics is linear and ``H`` quadratic (as in the
oscillator toy).  As ``dt -> 0`` all three converge to the continuous-time gradient.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..core.engine import relative_retrace_error
from ..core.hamiltonians import check_even_in_momentum
from ..core.integrators import drift_kick_drift

__all__ = [
    "HamiltonianSystem",
    "Trajectory",
    "GradientResult",
    "check_time_reversal",
    "check_separable",
    "time_grid",
    "loss_weights",
    "step",
    "integrate",
    "discrete_loss",
    "echo",
    "retrace_error",
    "rhel_gradient",
    "adjoint_gradient",
    "autodiff_gradient",
    "relative_error",
    "flatten",
    "oscillator_hamiltonian",
    "OscillatorTask",
    "oscillator_params",
    "parameter_names",
]

PyTree = Any


@dataclasses.dataclass(frozen=True)
class HamiltonianSystem:
    """A time-reversal-symmetric Hamiltonian system with an input signal and a running loss.

    Attributes:
        hamiltonian: ``H(phi, pi, theta, u) -> scalar``; must be even in ``pi``.
        input_signal: ``u(t) -> array`` (JAX-traceable in ``t``).
        running_loss: ``ell(phi, t) -> scalar``; positions only, so the loss is time-reversal
            invariant.
        separable: ``True`` if ``H = T(pi; theta, u) + V(phi; theta, u)`` (leapfrog integrator),
            ``False`` for a general ``H`` (implicit midpoint integrator).
        implicit_iters: fixed-point iterations per implicit-midpoint step.
    """

    hamiltonian: Callable[..., jax.Array]
    input_signal: Callable[[jax.Array], jax.Array]
    running_loss: Callable[[jax.Array, jax.Array], jax.Array]
    separable: bool = True
    implicit_iters: int = 30

    # -- derivatives ---------------------------------------------------------------------------
    def dH_dphi(self, phi, pi, theta, u):
        return jax.grad(self.hamiltonian, argnums=0)(phi, pi, theta, u)

    def dH_dpi(self, phi, pi, theta, u):
        return jax.grad(self.hamiltonian, argnums=1)(phi, pi, theta, u)

    def dH_dtheta(self, phi, pi, theta, u):
        return jax.grad(self.hamiltonian, argnums=2)(phi, pi, theta, u)

    def dl_dphi(self, phi, t):
        return jax.grad(self.running_loss, argnums=0)(phi, t)


class Trajectory(NamedTuple):
    """States ``phi[k], pi[k]`` at times ``t[k]``, ``k = 0..n_steps``."""

    t: jax.Array
    phi: jax.Array
    pi: jax.Array


class GradientResult(NamedTuple):
    """A gradient estimate.

    Attributes:
        theta: ``dL/dtheta`` (same structure as ``theta``).
        phi0, pi0: ``dL/dphi(-T)`` and ``dL/dpi(-T)``.
        trace: per-step contributions ``g_theta(k)`` for forward step ``k`` (leading axis
            ``n_steps``, in forward-time order); ``theta == trace.sum(0)``.
        loss: the discretised loss of the forward pass.
        extras: method-specific diagnostics (echo trajectories for RHEL, ...).
    """

    theta: PyTree
    phi0: jax.Array
    pi0: jax.Array
    trace: PyTree
    loss: jax.Array
    extras: dict


# ------------------------------------------------------------------------------------------------
# Checks
# ------------------------------------------------------------------------------------------------
def _random_states(key, phi_shape, n, scale):
    k1, k2 = jax.random.split(key)
    phi = scale * jax.random.normal(k1, (n, *phi_shape))
    pi = scale * jax.random.normal(k2, (n, *phi_shape))
    return phi, pi


def check_time_reversal(system: HamiltonianSystem, theta, phi_shape, *, t=0.0, key=None,
                        n_samples=16, scale=1.0, rtol=1e-6) -> None:
    """Raise ``ValueError`` unless ``H(phi, pi) == H(phi, -pi)`` on random states.

    RHEL relies on time-reversal symmetry: the momentum-flipped echo only retraces the forward
    trajectory when the Hamiltonian is even in the momentum.
    """
    key = jax.random.PRNGKey(0) if key is None else key
    phi, pi = _random_states(key, tuple(phi_shape), n_samples, scale)
    u = system.input_signal(jnp.asarray(t, dtype=phi.dtype))
    energy = lambda th, momenta: jax.vmap(lambda a, b: system.hamiltonian(a, b, th, u))(phi, momenta)
    check_even_in_momentum(energy, theta, pi, tolerance=rtol, what="Hamiltonian", formula="H(φ, π)")


def check_separable(system: HamiltonianSystem, theta, phi_shape, *, t=0.0, key=None,
                    n_samples=8, scale=1.0, rtol=1e-6) -> None:
    """Raise ``ValueError`` if ``system.separable`` is set but ``dH/dpi`` depends on ``phi``."""
    key = jax.random.PRNGKey(1) if key is None else key
    k1, k2 = jax.random.split(key)
    phi_a, pi = _random_states(k1, tuple(phi_shape), n_samples, scale)
    phi_b, _ = _random_states(k2, tuple(phi_shape), n_samples, scale)
    u = system.input_signal(jnp.asarray(t, dtype=phi_a.dtype))
    g = jax.vmap(lambda a, b: system.dH_dpi(a, b, theta, u))
    ga, gb = np.asarray(g(phi_a, pi)), np.asarray(g(phi_b, pi))
    if not np.allclose(ga, gb, rtol=rtol, atol=rtol * (np.abs(ga).max() + 1e-30)):
        raise ValueError(
            "Hamiltonian declared separable but dH/dpi depends on phi; pass separable=False "
            "to use the implicit midpoint integrator"
        )


# ------------------------------------------------------------------------------------------------
# Integrators
# ------------------------------------------------------------------------------------------------
def time_grid(T: float, n_steps: int, dtype=None) -> jax.Array:
    """State times ``t_k = -T + k T / n_steps``, ``k = 0..n_steps``."""
    dtype = dtype or jnp.zeros(()).dtype
    return -T + (T / n_steps) * jnp.arange(n_steps + 1, dtype=dtype)


def loss_weights(n_steps: int, dt, dtype=None) -> jax.Array:
    """Trapezoidal weights ``w_k`` for ``L = sum_k w_k ell(phi_k, t_k)``."""
    dtype = dtype or jnp.zeros(()).dtype
    w = jnp.full((n_steps + 1,), dt, dtype=dtype)
    return w.at[0].set(dt / 2).at[-1].set(dt / 2)


def _leapfrog_parts(system, phi, pi, theta, u, dt):
    """Drift-kick-drift (the HRUs' kernel, ``hamecho.core.integrators.drift_kick_drift``); returns the
    sub-step states (phi_h, pi') and the new phi. Separable H: dH/dpi does not depend on phi."""
    velocity = lambda p: system.dH_dpi(phi, p, theta, u)
    force = lambda q: -system.dH_dphi(q, pi, theta, u)
    phi_new, pi_new, phi_h = drift_kick_drift(phi, pi, velocity, force, dt)
    return phi_h, pi_new, phi_new


def _midpoint_solve(system, phi, pi, theta, u, dt):
    """Implicit midpoint: returns (phi', pi') by unrolled fixed-point iteration."""

    def flow(a, b):  # J grad H at (a, b)
        return system.dH_dpi(a, b, theta, u), -system.dH_dphi(a, b, theta, u)

    fphi, fpi = flow(phi, pi)
    guess = (phi + dt * fphi, pi + dt * fpi)

    def body(_, state):
        p1, q1 = state
        fphi, fpi = flow(0.5 * (phi + p1), 0.5 * (pi + q1))
        return phi + dt * fphi, pi + dt * fpi

    return jax.lax.fori_loop(0, system.implicit_iters, body, guess)


def step(system: HamiltonianSystem, phi, pi, theta, u, dt):
    """One step of the symmetric integrator; returns ``(phi', pi')``."""
    if system.separable:
        _, pi_new, phi_new = _leapfrog_parts(system, phi, pi, theta, u, dt)
        return phi_new, pi_new
    return _midpoint_solve(system, phi, pi, theta, u, dt)


def _step_inputs(system, T, n_steps, dtype):
    dt = T / n_steps
    t_mid = -T + dt * (jnp.arange(n_steps, dtype=dtype) + 0.5)
    return jax.vmap(system.input_signal)(t_mid)


def integrate(system: HamiltonianSystem, theta, phi0, pi0, T: float, n_steps: int) -> Trajectory:
    """Forward pass on ``[-T, 0]``; returns all ``n_steps + 1`` states."""
    return _integrate(system, theta, phi0, pi0, T, n_steps)


def _integrate_impl(system, theta, phi0, pi0, T, n_steps):
    dt = T / n_steps
    us = _step_inputs(system, T, n_steps, phi0.dtype)

    def body(carry, u):
        phi, pi = step(system, carry[0], carry[1], theta, u, dt)
        return (phi, pi), (phi, pi)

    _, (phis, pis) = jax.lax.scan(body, (phi0, pi0), us)
    phis = jnp.concatenate([phi0[None], phis])
    pis = jnp.concatenate([pi0[None], pis])
    return Trajectory(time_grid(T, n_steps, phi0.dtype), phis, pis)


_integrate = jax.jit(_integrate_impl, static_argnames=("system", "T", "n_steps"))


def discrete_loss(system: HamiltonianSystem, theta, phi0, pi0, T: float, n_steps: int):
    """``L = sum_k w_k ell(phi_k, t_k)`` over the discretised forward trajectory."""
    traj = _integrate_impl(system, theta, phi0, pi0, T, n_steps)
    w = loss_weights(n_steps, T / n_steps, phi0.dtype)
    return jnp.sum(w * jax.vmap(system.running_loss)(traj.phi, traj.t))


# ------------------------------------------------------------------------------------------------
# Echo and RHEL
# ------------------------------------------------------------------------------------------------
def _echo_impl(system, theta, phiN, piN, T, n_steps, eps, loss_grads=None):
    """Echo from the momentum-flipped final state with nudge strength ``eps``.

    The nudge uses ``d ell/d phi`` at the echo's own position, or, if ``loss_grads`` (shape
    ``(n_steps + 1, *phi.shape)``, forward order) is given, those fixed forward-pass gradients.

    Returns the echo states (``n_steps + 1``, in echo order: index ``j`` mirrors forward state
    ``n_steps - j``) and the per-step ``dt * grad_theta H_step`` in forward-step order.
    """
    dt = T / n_steps
    dtype = phiN.dtype
    t = time_grid(T, n_steps, dtype)
    w = loss_weights(n_steps, dt, dtype)
    us = _step_inputs(system, T, n_steps, dtype)

    def nudge(phi, k):
        g = system.dl_dphi(phi, t[k]) if loss_grads is None else loss_grads[k]
        return eps * w[k] * g

    pi_start = -piN + nudge(phiN, n_steps)

    def body(carry, k):  # reverse forward step k (k = N-1 .. 0), land on mirror of state k
        phi, pi = carry
        u = us[k]
        if system.separable:
            phi_h, pi_new, phi_new = _leapfrog_parts(system, phi, pi, theta, u, dt)
            g = jax.tree.map(
                lambda a, b: 0.5 * dt * (a + b),
                system.dH_dtheta(phi_h, pi, theta, u),
                system.dH_dtheta(phi_h, pi_new, theta, u),
            )
        else:
            phi_new, pi_new = _midpoint_solve(system, phi, pi, theta, u, dt)
            g = jax.tree.map(
                lambda a: dt * a,
                system.dH_dtheta(0.5 * (phi + phi_new), 0.5 * (pi + pi_new), theta, u),
            )
        pi_new = pi_new + nudge(phi_new, k)
        return (phi_new, pi_new), (phi_new, pi_new, g)

    ks = jnp.arange(n_steps - 1, -1, -1)
    _, (phis, pis, gs) = jax.lax.scan(body, (phiN, pi_start), ks)
    phis = jnp.concatenate([phiN[None], phis])
    pis = jnp.concatenate([pi_start[None], pis])
    gs = jax.tree.map(lambda a: a[::-1], gs)  # forward-step order
    return phis, pis, gs


_echo = jax.jit(_echo_impl, static_argnames=("system", "T", "n_steps"))


def echo(system: HamiltonianSystem, theta, phiN, piN, T: float, n_steps: int, eps=0.0):
    """Run one echo; returns a :class:`Trajectory` in echo time ``tau = 0..T``.

    Echo state ``j`` is at echo time ``tau_j = j dt`` and mirrors forward state ``n_steps - j``:
    with ``eps = 0`` it equals ``(phi, -pi)`` of that state up to round-off.
    """
    phis, pis, _ = _echo(system, theta, phiN, piN, T, n_steps, jnp.asarray(eps, phiN.dtype))
    tau = T + time_grid(T, n_steps, phiN.dtype)
    return Trajectory(tau, phis, pis)


def retrace_error(system: HamiltonianSystem, theta, phi0, pi0, T: float, n_steps: int) -> float:
    """How far the un-nudged echo's end misses the conjugate initial state ``(phi0, -pi0)``, relative to
    the final state (``hamecho.core.engine.relative_retrace_error``: the same measure as for the HRUs)."""
    traj = integrate(system, theta, phi0, pi0, T, n_steps)
    back = echo(system, theta, traj.phi[-1], traj.pi[-1], T, n_steps, 0.0)
    return float(relative_retrace_error((back.phi[-1], back.pi[-1]), (phi0, pi0), (traj.phi[-1], traj.pi[-1])))


def _rhel_impl(system, theta, phi0, pi0, T, n_steps, eps, one_sided, nudge):
    traj = _integrate_impl(system, theta, phi0, pi0, T, n_steps)
    phiN, piN = traj.phi[-1], traj.pi[-1]
    signs = jnp.array([1.0, -1.0], dtype=phi0.dtype)
    if nudge == "forward":
        loss_grads = jax.vmap(system.dl_dphi)(traj.phi, traj.t)
    elif nudge == "echo":
        loss_grads = None
    else:
        raise ValueError(f"nudge must be 'forward' or 'echo', not {nudge!r}")
    run = jax.vmap(lambda e: _echo_impl(system, theta, phiN, piN, T, n_steps, e, loss_grads))
    if one_sided:  # (G(+eps) - G(0)) / eps: O(eps) bias
        phis, pis, gs = run(jnp.stack([eps, 0.0 * eps]).astype(phi0.dtype))
        denom = eps
    else:  # (G(+eps) - G(-eps)) / 2 eps: O(eps^2) bias
        phis, pis, gs = run(signs * eps)
        denom = 2.0 * eps
    trace = jax.tree.map(lambda a: -(a[0] - a[1]) / denom, gs)
    grad = jax.tree.map(lambda a: a.sum(0), trace)
    dphi0 = (pis[0, -1] - pis[1, -1]) / denom
    dpi0 = (phis[0, -1] - phis[1, -1]) / denom
    w = loss_weights(n_steps, T / n_steps, phi0.dtype)
    loss = jnp.sum(w * jax.vmap(system.running_loss)(traj.phi, traj.t))
    return grad, dphi0, dpi0, trace, loss, traj, phis, pis


_rhel = jax.jit(_rhel_impl, static_argnames=("system", "T", "n_steps", "one_sided", "nudge"))


def rhel_gradient(system: HamiltonianSystem, theta, phi0, pi0, T: float, n_steps: int,
                  eps: float = 1e-4, *, one_sided: bool = False, nudge: str = "forward",
                  check: bool = True) -> GradientResult:
    """RHEL estimate of ``dL/dtheta`` and ``dL/d(phi0, pi0)`` (one forward pass, two echoes).

    ``nudge="forward"`` (default; the paper's explicit/linearised nudge, Cor. A.8, as in its
    code) pushes the echo momentum by ``eps w_k d ell/d phi`` evaluated on the forward
    trajectory; the echo is then affine in ``eps`` for linear dynamics and the two-sided estimator
    is exact at any ``eps`` for quadratic ``H``.  ``nudge="echo"`` evaluates ``d ell/d phi`` on
    the echo itself (the continuous Eq. 6, what a physical system would do; nothing of the
    forward pass is stored): same limit, but an ``O(eps^2)`` bias even for linear dynamics.

    ``extras`` holds the forward trajectory (``"forward"``) and the echo states
    (``"echo_phi"``, ``"echo_pi"``; leading axis ``[+eps, -eps]`` or ``[+eps, 0]`` if
    ``one_sided``).  ``check`` verifies time-reversal symmetry (and separability when declared)
    on random states first and raises ``ValueError`` if it fails.
    """
    if check:
        check_time_reversal(system, theta, jnp.shape(phi0), t=-T)
        if system.separable:
            check_separable(system, theta, jnp.shape(phi0), t=-T)
    grad, dphi0, dpi0, trace, loss, traj, phis, pis = _rhel(
        system, theta, phi0, pi0, T, n_steps, jnp.asarray(eps, phi0.dtype), one_sided, nudge)
    extras = {"forward": traj, "echo_phi": phis, "echo_pi": pis, "eps": eps, "nudge": nudge}
    return GradientResult(grad, dphi0, dpi0, trace, loss, extras)


# ------------------------------------------------------------------------------------------------
# Adjoint state method
# ------------------------------------------------------------------------------------------------
def _adjoint_impl(system, theta, phi0, pi0, T, n_steps):
    """Backward adjoint ODE ``dlambda/dtau = Hess H J^T lambda + grad ell`` along the forward.

    Integrated with the adjoint scheme of the forward integrator so that ``lambda_k`` is exactly
    ``dL/dPhi_k`` of the discretised problem.  Only Hessian-vector products of ``H`` at the
    stored forward states are used (``grad`` of ``<grad H, a>``), never a trajectory-wide tape.
    """
    dt = T / n_steps
    traj = _integrate_impl(system, theta, phi0, pi0, T, n_steps)
    w = loss_weights(n_steps, dt, phi0.dtype)
    us = _step_inputs(system, T, n_steps, phi0.dtype)

    def contract(fn, a, phi, pi, th, u):
        """grad of <fn(phi, pi, th, u), a> w.r.t. (phi, pi, th): Hessian-vector products."""
        return jax.grad(lambda x, y, z: jnp.vdot(fn(x, y, z, u), a), argnums=(0, 1, 2))(phi, pi, th)

    def adjoint_step_leapfrog(a_phi, a_pi, phi, pi, u):
        phi_h, pi_new, _ = _leapfrog_parts(system, phi, pi, theta, u, dt)
        # second drift: phi' = phi_h + dt/2 dH/dpi(pi')
        _, g_pi, g_th = contract(system.dH_dpi, a_phi, phi_h, pi_new, theta, u)
        a_pi = a_pi + 0.5 * dt * g_pi
        g = jax.tree.map(lambda x: 0.5 * dt * x, g_th)
        # kick: pi' = pi - dt dH/dphi(phi_h)
        g_phi, _, g_th = contract(system.dH_dphi, a_pi, phi_h, pi, theta, u)
        a_phi = a_phi - dt * g_phi
        g = jax.tree.map(lambda x, y: x - dt * y, g, g_th)
        # first drift: phi_h = phi + dt/2 dH/dpi(pi)
        _, g_pi, g_th = contract(system.dH_dpi, a_phi, phi, pi, theta, u)
        a_pi = a_pi + 0.5 * dt * g_pi
        g = jax.tree.map(lambda x, y: x + 0.5 * dt * y, g, g_th)
        return a_phi, a_pi, g

    def adjoint_step_midpoint(a_phi, a_pi, phi, pi, phi1, pi1, u):
        # Phi' = Phi + dt J grad H(m), m = (Phi + Phi')/2.  The adjoint is the implicit midpoint
        # rule for the adjoint ODE: mu = (lambda + lambda')/2 solves mu = lambda' - dt/2 A J mu,
        # lambda = 2 mu - lambda', g_theta = dt d_theta <grad H(m), J^T mu>.
        m_phi, m_pi = 0.5 * (phi + phi1), 0.5 * (pi + pi1)

        def grad_h(a, b, th):
            return jnp.concatenate([system.dH_dphi(a, b, th, u), system.dH_dpi(a, b, th, u)])

        n = phi.size

        def a_j_mu(mu_phi, mu_pi):  # A J mu with J mu = (mu_pi, -mu_phi)
            _, jvp = jax.jvp(lambda a, b: grad_h(a, b, theta), (m_phi, m_pi), (mu_pi, -mu_phi))
            return jvp[:n].reshape(phi.shape), jvp[n:].reshape(pi.shape)

        def body(_, mu):
            ap, aq = a_j_mu(*mu)
            return a_phi - 0.5 * dt * ap, a_pi - 0.5 * dt * aq

        mu_phi, mu_pi = jax.lax.fori_loop(0, system.implicit_iters, body, (a_phi, a_pi))
        jt_mu = jnp.concatenate([-mu_pi.ravel(), mu_phi.ravel()])  # J^T mu
        g_th = jax.grad(lambda th: jnp.vdot(grad_h(m_phi, m_pi, th), jt_mu))(theta)
        g = jax.tree.map(lambda x: dt * x, g_th)
        return 2 * mu_phi - a_phi, 2 * mu_pi - a_pi, g

    def body(carry, k):
        a_phi, a_pi = carry
        phi, pi, u = traj.phi[k], traj.pi[k], us[k]
        if system.separable:
            a_phi, a_pi, g = adjoint_step_leapfrog(a_phi, a_pi, phi, pi, u)
        else:
            a_phi, a_pi, g = adjoint_step_midpoint(a_phi, a_pi, phi, pi, traj.phi[k + 1],
                                                   traj.pi[k + 1], u)
        a_phi = a_phi + w[k] * system.dl_dphi(phi, traj.t[k])
        return (a_phi, a_pi), (g, a_phi, a_pi)

    lam_phi = w[-1] * system.dl_dphi(traj.phi[-1], traj.t[-1])
    lam_pi = jnp.zeros_like(pi0)
    ks = jnp.arange(n_steps - 1, -1, -1)
    (a_phi, a_pi), (gs, lphis, lpis) = jax.lax.scan(body, (lam_phi, lam_pi), ks)
    trace = jax.tree.map(lambda a: a[::-1], gs)
    grad = jax.tree.map(lambda a: a.sum(0), trace)
    loss = jnp.sum(w * jax.vmap(system.running_loss)(traj.phi, traj.t))
    lam_phis = jnp.concatenate([lphis[::-1], lam_phi[None]])
    lam_pis = jnp.concatenate([lpis[::-1], lam_pi[None]])
    return grad, a_phi, a_pi, trace, loss, traj, lam_phis, lam_pis


_adjoint = jax.jit(_adjoint_impl, static_argnames=("system", "T", "n_steps"))


def adjoint_gradient(system: HamiltonianSystem, theta, phi0, pi0, T: float,
                     n_steps: int) -> GradientResult:
    """Adjoint-state-method gradient.  ``extras["lambda_phi"/"lambda_pi"][k] = dL/dPhi_k``."""
    grad, dphi0, dpi0, trace, loss, traj, lphi, lpi = _adjoint(system, theta, phi0, pi0, T, n_steps)
    extras = {"forward": traj, "lambda_phi": lphi, "lambda_pi": lpi}
    return GradientResult(grad, dphi0, dpi0, trace, loss, extras)


def _autodiff_impl(system, theta, phi0, pi0, T, n_steps):
    loss, grads = jax.value_and_grad(
        lambda th, a, b: discrete_loss(system, th, a, b, T, n_steps), argnums=(0, 1, 2)
    )(theta, phi0, pi0)
    return loss, grads


_autodiff = jax.jit(_autodiff_impl, static_argnames=("system", "T", "n_steps"))


def autodiff_gradient(system: HamiltonianSystem, theta, phi0, pi0, T: float,
                      n_steps: int) -> GradientResult:
    """Reverse-mode autodiff through the discretised forward (no per-step trace)."""
    loss, (g_th, g_phi, g_pi) = _autodiff(system, theta, phi0, pi0, T, n_steps)
    return GradientResult(g_th, g_phi, g_pi, None, loss, {})


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------
def flatten(tree) -> np.ndarray:
    """Concatenate the leaves of a pytree into one float64 NumPy vector."""
    return np.concatenate([np.ravel(np.asarray(x, dtype=np.float64))
                           for x in jax.tree.leaves(tree)])


def relative_error(estimate, reference, floor: float = 1e-8) -> float:
    """Max over entries of ``|a - b| / max(|b|, floor * max|b|)``."""
    a, b = flatten(estimate), flatten(reference)
    scale = np.maximum(np.abs(b), floor * max(np.abs(b).max(), 1e-300))
    return float(np.max(np.abs(a - b) / scale))


# ------------------------------------------------------------------------------------------------
# The paper's toy: coupled harmonic oscillators (Eq. 8)
# ------------------------------------------------------------------------------------------------
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
