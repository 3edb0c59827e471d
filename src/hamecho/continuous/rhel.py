"""Continuous-time RHEL: the Hamiltonian echo of a ``HamiltonianSystem`` and the gradient it gives.

The final state is momentum-flipped and the *same* dynamics is run again for ``tau in [0, T]`` with inputs
and losses replayed backwards, ``u(-tau)`` and ``ell(., -tau)``, and with the nudge ``-eps J grad ell``
(which pushes the momentum by ``+eps d ell/d phi``). The echo adds the nudge ``+eps w_k d ell/d phi`` to
the momentum right after landing on the mirror of state ``k`` (and at ``k = N`` before the first echo
step). Two echoes, at ``+eps`` and ``-eps``, give the two-sided estimator
``-(1/2eps) int (grad_theta H(echo+) - grad_theta H(echo-)) dtau`` and the initial-state gradient
``Sigma_x (Phi_echo+(T) - Phi_echo-(T)) / 2eps`` (``hamecho.RHEL(estimator="one_sided")``: ``+eps`` and
the free echo, divided by ``eps``). Nothing but the final state and the input signal is needed; no
Jacobian is ever formed.

The RHEL integrand for one step is ``dt`` times ``grad_theta`` of the step-averaged Hamiltonian
``(H(phi_h, pi) + H(phi_h, pi')) / 2`` for the leapfrog, ``dt grad_theta H`` at the step midpoint for the
implicit midpoint rule. With these choices the estimator is the discrete RHEL of the integrator (the
paper's Theorem 3.2 applied to it) and converges to the gradient of the *discretised* loss -- i.e. to
autodiff and to the discrete adjoint -- with an ``O(eps^2)`` bias, which is zero when the dynamics is
linear and ``H`` quadratic (as in the oscillator toy). As ``dt -> 0`` all three converge to the
continuous-time gradient.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ..core.engine import relative_retrace_error
from ..core.gradients import RHEL
from .integrators import forward_states, integrate, leapfrog_parts, loss_weights, midpoint_solve, step_inputs, time_grid
from .system import GradientResult, HamiltonianSystem, Trajectory, check_separable, check_time_reversal


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
    us = step_inputs(system, T, n_steps, dtype)

    def nudge(phi, k):
        g = system.dl_dphi(phi, t[k]) if loss_grads is None else loss_grads[k]
        return eps * w[k] * g

    pi_start = -piN + nudge(phiN, n_steps)

    def body(carry, k):  # reverse forward step k (k = N-1 .. 0), land on mirror of state k
        phi, pi = carry
        u = us[k]
        if system.separable:
            phi_h, pi_new, phi_new = leapfrog_parts(system, phi, pi, theta, u, dt)
            g = jax.tree.map(
                lambda a, b: 0.5 * dt * (a + b),
                system.dH_dtheta(phi_h, pi, theta, u),
                system.dH_dtheta(phi_h, pi_new, theta, u),
            )
        else:
            phi_new, pi_new = midpoint_solve(system, phi, pi, theta, u, dt)
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
    traj = forward_states(system, theta, phi0, pi0, T, n_steps)
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


# The nudge continuous-time RHEL uses unless told: small, for the toy's losses of order one.
DEFAULT_RHEL = RHEL(eps=1e-4)


def rhel_gradient(system: HamiltonianSystem, theta, phi0, pi0, T: float, n_steps: int,
                  gradient: RHEL = DEFAULT_RHEL, *, nudge: str = "forward", check: bool = True) -> GradientResult:
    """RHEL estimate of ``dL/dtheta`` and ``dL/d(phi0, pi0)`` (one forward pass, two echoes).

    ``gradient``: a ``hamecho.RHEL``: its ``eps`` is the nudge, ``estimator="two_sided"`` echoes at ``+eps``
    and ``-eps`` (``O(eps^2)`` bias), ``"one_sided"`` at ``+eps`` and 0 (``O(eps)``); the two echoes' gradients
    are subtracted directly (``difference`` "auto" or "direct"), as a physical system would.

    ``nudge="forward"`` (default; the paper's explicit/linearised nudge, Cor. A.8, as in its
    code) pushes the echo momentum by ``eps w_k d ell/d phi`` evaluated on the forward
    trajectory; the echo is then affine in ``eps`` for linear dynamics and the two-sided estimator
    is exact at any ``eps`` for quadratic ``H``.  ``nudge="echo"`` evaluates ``d ell/d phi`` on
    the echo itself (the continuous Eq. 6, what a physical system would do; nothing of the
    forward pass is stored): same limit, but an ``O(eps^2)`` bias even for linear dynamics.

    ``extras`` holds the forward trajectory (``"forward"``) and the echo states
    (``"echo_phi"``, ``"echo_pi"``; leading axis ``[+eps, -eps]``, or ``[+eps, 0]`` one-sided).
    ``check`` verifies time-reversal symmetry (and separability when declared)
    on random states first and raises ``ValueError`` if it fails.
    """
    if not isinstance(gradient, RHEL):
        raise ValueError(f"gradient must be a hamecho.RHEL, such as hamecho.RHEL(eps=1e-4) or "
                         f"hamecho.RHEL(eps=1e-2, estimator='one_sided'); got {gradient!r}")
    if gradient.difference == "quadrature":
        raise ValueError("continuous-time RHEL subtracts the gradients of its two echoes directly: use "
                         f"difference='auto' or 'direct'; got {gradient!r}")
    if check:
        check_time_reversal(system, theta, jnp.shape(phi0), t=-T)
        if system.separable:
            check_separable(system, theta, jnp.shape(phi0), t=-T)
    one_sided = gradient.estimator == "one_sided"
    grad, dphi0, dpi0, trace, loss, traj, phis, pis = _rhel(
        system, theta, phi0, pi0, T, n_steps, jnp.asarray(gradient.eps, phi0.dtype), one_sided, nudge)
    extras = {"forward": traj, "echo_phi": phis, "echo_pi": pis, "eps": gradient.eps, "nudge": nudge}
    return GradientResult(grad, dphi0, dpi0, trace, loss, extras)
