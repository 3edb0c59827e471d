"""SPSA on an HSSM: the loss and its gradient from loss evaluations (``hamecho.SPSA``, Spall 1992).

What is perturbed, and why. RHEL and ``PhysicsAware`` replace only what autodiff cannot do — the
derivative of a core run on a device, with respect to its parameters θ *and its drives* — and chain
through the digital parts (encoder, norms, B, GLUs, head) by autodiff. A zeroth-order rule cannot give a
core's derivative with respect to its drives: they are L·N·P numbers per core and batch, and an SPSA
estimate's variance grows with the number of perturbed entries. So SPSA perturbs the *parameters* whose
gradient has to cross a core — every trainable array before the last core, digital ones included
(``hamecho.nn.hssm.through_cores``): the encoder, every norm, B, θ, the lower blocks' readouts and
GLUs — and evaluates the whole model's loss. The arrays after the last core (its C and D, its GLU, the
head) need no derivative of a core: they get their exact gradient from the unperturbed forward pass, as
under every other rule. Perturbing only the cores' θ would leave everything before a core untrained (a
fixed random encoder for the device), which is not the rule people use; perturbing the head too would
only add variance to gradients that are exact for free.

Cost per update: one unperturbed forward pass and two per perturbation (``SPSA.passes_per_step``).
"""
from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from ..core.gradients import spsa_estimate, tree_digest
from .hssm import through_cores, trainable

# Mixed into the key of the perturbations (a stream apart from dropout's, which uses the same key).
SPSA_STREAM = 0x53505341


def spsa_key(spsa, key, perturbed, x):
    """The key of this call's perturbations: ``spsa.seed``, the call's ``key`` (when given) and a digest of the
    perturbed arrays and the batch (fresh signs at every training step, the same for a repeated call)."""
    base = jax.random.PRNGKey(spsa.seed) if key is None else jax.random.fold_in(key, SPSA_STREAM + spsa.seed)
    return jax.random.fold_in(base, tree_digest(perturbed, x))


def spsa_value_and_grad(loss_and_statistics, model, x, y, choices, key):
    """((loss, norm statistics), grads) as ``eqx.filter_value_and_grad`` returns them, under ``choices.gradient``
    (an ``SPSA``): exact gradients after the last core, Spall's estimate for :func:`through_cores`, zero for
    the other floating-point arrays (the norms' running statistics). ``loss_and_statistics(model, x, y,
    choices, key)`` is the training loss; dropout draws the same masks in every evaluation (common random
    numbers), so the ± difference sees the perturbation only.
    """
    perturbed_spec = through_cores(model)
    exact_spec = jax.tree_util.tree_map(lambda t, p: t and not p, trainable(model), perturbed_spec)
    exact, rest = eqx.partition(model, exact_spec)
    loss_of_exact = lambda part: loss_and_statistics(eqx.combine(part, rest), x, y, choices, key)
    (loss, stats), exact_grads = eqx.filter_value_and_grad(loss_of_exact, has_aux=True)(exact)
    perturbed, others = eqx.partition(model, perturbed_spec)
    loss_of_perturbed = lambda part: loss_and_statistics(eqx.combine(part, others), x, y, choices, key)[0]
    estimate = spsa_estimate(loss_of_perturbed, perturbed, choices.gradient,
                             spsa_key(choices.gradient, key, perturbed, x))
    zeros = jax.tree_util.tree_map(lambda a: jnp.zeros_like(a) if eqx.is_inexact_array(a) else None, model)
    return (loss, stats), eqx.combine(exact_grads, estimate, zeros)
