"""Reverse-mode autodiff through the discretised forward pass (the other reference), and how gradients are
compared (``flatten``, ``relative_error``)."""
from __future__ import annotations

import jax
import numpy as np

from .integrators import discrete_loss
from .system import GradientResult, HamiltonianSystem


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


def flatten(tree) -> np.ndarray:
    """Concatenate the leaves of a pytree into one float64 NumPy vector."""
    return np.concatenate([np.ravel(np.asarray(x, dtype=np.float64))
                           for x in jax.tree.leaves(tree)])


def relative_error(estimate, reference, floor: float = 1e-8) -> float:
    """Max over entries of ``|a - b| / max(|b|, floor * max|b|)``."""
    a, b = flatten(estimate), flatten(reference)
    scale = np.maximum(np.abs(b), floor * max(np.abs(b).max(), 1e-300))
    return float(np.max(np.abs(a - b) / scale))
