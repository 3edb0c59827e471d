"""The adjoint state method for a ``HamiltonianSystem``: a reference gradient for continuous-time RHEL."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from .integrators import forward_states, leapfrog_parts, loss_weights, step_inputs
from .system import GradientResult, HamiltonianSystem


def _adjoint_impl(system, theta, phi0, pi0, T, n_steps):
    """Backward adjoint ODE ``dlambda/dtau = Hess H J^T lambda + grad ell`` along the forward.

    Integrated with the adjoint scheme of the forward integrator so that ``lambda_k`` is exactly
    ``dL/dPhi_k`` of the discretised problem.  Only Hessian-vector products of ``H`` at the
    stored forward states are used (``grad`` of ``<grad H, a>``), never a trajectory-wide tape.
    """
    dt = T / n_steps
    traj = forward_states(system, theta, phi0, pi0, T, n_steps)
    w = loss_weights(n_steps, dt, phi0.dtype)
    us = step_inputs(system, T, n_steps, phi0.dtype)

    def contract(fn, a, phi, pi, th, u):
        """grad of <fn(phi, pi, th, u), a> w.r.t. (phi, pi, th): Hessian-vector products."""
        return jax.grad(lambda x, y, z: jnp.vdot(fn(x, y, z, u), a), argnums=(0, 1, 2))(phi, pi, th)

    def adjoint_step_leapfrog(a_phi, a_pi, phi, pi, u):
        phi_h, pi_new, _ = leapfrog_parts(system, phi, pi, theta, u, dt)
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
