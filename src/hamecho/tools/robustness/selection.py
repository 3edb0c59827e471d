"""Which arrays a comparison reads, chosen by selectors on the model (as ``eqx.tree_at`` takes them), and how
two gradients are compared.

A selector is a function model → the nodes it picks (arrays or whole sub-modules), e.g. :func:`core_arrays`;
:func:`selection` turns it into a bool pytree over the model's trainable arrays. A renamed field then fails
loudly (an ``AttributeError`` in the selector) instead of silently matching nothing, as a key-path string would.
"""
from __future__ import annotations

import equinox as eqx
import jax
import numpy as np

from ...nn.hssm import after_last_core, trainable  # after_last_core: the selector SPSA uses too


def core_arrays(model) -> list:
    """Selector: every HRU's θ and B, the arrays whose gradient RHEL computes from the echo alone."""
    return [node for block in model.blocks for node in (block.hru.theta, block.hru.B)]


def selection(model, where) -> object:
    """Bool pytree of ``model``'s structure: True for the trainable arrays in the nodes ``where(model)``
    returns (``where=None``: every trainable array)."""
    spec = trainable(model)
    if where is None:
        return spec
    nothing = jax.tree_util.tree_map(lambda _: False, spec)
    picked = eqx.tree_at(where, nothing, replace_fn=lambda node: jax.tree_util.tree_map(lambda _: True, node))
    return jax.tree_util.tree_map(lambda a, b: a and b, spec, picked)


def echo_dependent(model) -> object:
    """The arrays whose gradient passes through at least one echo (every trainable array not
    :func:`after_last_core`), as a mask for ``optax.masked`` over the optimiser's tree
    (``hamecho.init_optimizer``'s: None where an array is not trainable)."""
    after = selection(model, after_last_core)
    through_echo = jax.tree_util.tree_map(lambda t, a: t and not a, trainable(model), after)
    return eqx.filter(through_echo, trainable(model))


def selected_arrays(tree, mask) -> list[np.ndarray]:
    """The arrays of ``tree`` (a model or a gradient of one) where ``mask`` is True, in tree order, as float64."""
    return [np.ravel(np.asarray(leaf, np.float64)) for leaf in jax.tree_util.tree_leaves(eqx.filter(tree, mask))]


def flat(tree, mask) -> np.ndarray:
    """:func:`selected_arrays` as one vector."""
    return np.concatenate(selected_arrays(tree, mask))


def cosine(g, r) -> float:
    """Cosine of two vectors (0 when either is zero)."""
    g_norm, r_norm = float(np.linalg.norm(g)), float(np.linalg.norm(r))
    return float(g @ r) / (g_norm * r_norm) if g_norm > 0 and r_norm > 0 else 0.0


def compare(grads, reference, model) -> dict:
    """cosine and norm_ratio over the core arrays (:func:`core_arrays`), cosine_min (the lowest cosine of one
    core array) and cosine_all (over every trainable array)."""
    core = selection(model, core_arrays)
    g, r = flat(grads, core), flat(reference, core)
    per_array = [cosine(a, b) for a, b in zip(selected_arrays(grads, core), selected_arrays(reference, core))]
    every = selection(model, None)
    return {"cosine": cosine(g, r), "norm_ratio": float(np.linalg.norm(g) / np.linalg.norm(r)),
            "cosine_min": min(per_array), "cosine_all": cosine(flat(grads, every), flat(reference, every))}
