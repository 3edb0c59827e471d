"""Helpers shared by the tests of the physical devices and the learning rules: one core's gradients, and how far
two gradients (pytrees) are apart."""
from functools import partial

import jax
import numpy as np

from hamecho.core.engine import hamiltonian_core


@partial(jax.jit, static_argnums=(0, 1, 2))
def core_grads(ham, gradient, integrator, theta, drives, cotangents):
    """(∂θ, ∂drives) of ⟨cotangents, positions⟩ through one core: what an HRU layer's core hands back."""
    _, vjp = jax.vjp(lambda t, d: hamiltonian_core(ham, t, d, gradient=gradient, integrator=integrator),
                     theta, drives)
    return vjp(cotangents)


def flat(grads) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(a)) for a in jax.tree_util.tree_leaves(grads)])


def rel_err(grads, reference) -> float:
    """max |grads − reference| / max |reference| over every array."""
    g, r = flat(grads), flat(reference)
    return float(np.max(np.abs(g - r)) / np.max(np.abs(r)))


def cosine(grads, reference) -> float:
    g, r = flat(grads), flat(reference)
    return float(g @ r / (np.linalg.norm(g) * np.linalg.norm(r)))
