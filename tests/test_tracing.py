"""trace_once (hamecho.core.tracing): a recorded trace replayed is the same computation as the Python code.

The cores of a model's blocks are traced once and replayed; these tests check that the Python body runs once
per signature, that the jaxpr a replay produces is the jaxpr the Python code produces, and that a whole
training step compiles to the same optimised HLO (hence the same bits) with and without replays.
"""
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import hamecho as he
from hamecho.core.gradients import RHEL
from hamecho.core.hamiltonians import NONLINEAR_HAMILTONIAN
from hamecho.core.integrators import _echo_steps, echo_steps
from hamecho.core.tracing import replaying, trace_once

pytestmark = pytest.mark.usefixtures("x64")


def test_the_python_body_runs_once_per_signature():
    calls = []

    def scaled_cumsum(scale, x, y):
        calls.append(x.shape)
        return jax.lax.scan(lambda c, v: (c + scale * v, c), jnp.zeros_like(x[0]), x * y)

    replayed = trace_once(scaled_cumsum, static_argnums=(0,))
    twice = jax.jit(lambda x, y: (replayed(2.0, x, y), replayed(2.0, y, x), replayed(3.0, x, y)))
    x, y = jnp.arange(12.0).reshape(4, 3), jnp.ones((4, 3))
    out = twice(x, y)
    assert calls == [(4, 3), (4, 3)]  # the second call of the same signature replayed; another static traced
    direct = (scaled_cumsum(2.0, x, y), scaled_cumsum(2.0, y, x), scaled_cumsum(3.0, x, y))
    for a, b in zip(jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(direct)):
        np.testing.assert_array_equal(a, b)
    calls.clear()
    jax.jit(lambda x: replayed(2.0, x, x))(jnp.ones((5, 3)))
    assert calls == [(5, 3)]  # a new shape is traced anew
    replayed(2.0, x, y)  # concrete arrays: the Python code runs (and may fold constants, as JAX does)
    assert calls == [(5, 3), (4, 3)]


def _two_echoes(theta, drives, state, cotangents):
    """Two cores' echoes of the same shapes, as two blocks of a model run them."""
    zeros = jax.tree_util.tree_map(jnp.zeros_like, theta)
    half = tuple(jnp.zeros_like(s) for s in state)
    first = echo_steps(NONLINEAR_HAMILTONIAN, RHEL(), "direct", theta, drives, state, half, zeros, cotangents)
    second = echo_steps(NONLINEAR_HAMILTONIAN, RHEL(), "direct", theta, 2 * drives, first[0], half, zeros,
                        cotangents)
    return first, second


def test_a_replayed_echo_is_the_jaxpr_the_python_code_gives():
    theta = {"w": jnp.full(3, 0.7), "b": jnp.zeros(3), "alpha": jnp.asarray(0.5), "log_step": jnp.asarray(-1.0)}
    drives, cotangents = jnp.ones((7, 2, 3)), jnp.full((7, 2, 3), 0.1)
    state = (jnp.full((2, 3), 0.2), jnp.full((2, 3), -0.1))
    replayed = jax.make_jaxpr(_two_echoes)(theta, drives, state, cotangents)
    with replaying(False):
        direct = jax.make_jaxpr(_two_echoes)(theta, drives, state, cotangents)
    assert str(replayed) == str(direct)
    assert _echo_steps is not echo_steps  # the module's echo is the replayed one


def _normalised_hlo(compiled) -> str:
    """The optimised HLO without metadata and with instruction and computation numbers dropped."""
    text = compiled.as_text()
    text = text[text.index("\n\n", text.index("StackFrames")):] if "StackFrames" in text else text
    text = re.sub(r", metadata=\{[^}]*\}", "", text)
    text = re.sub(r"\.clone(\.\d+)*", "", text)
    return re.sub(r"(?<=[A-Za-z_0-9])\.\d+", "", text)


@pytest.mark.parametrize("hru, gradient", [("nonlinear", he.RHEL()), ("linear", he.BPTT())])
def test_a_training_step_compiles_to_the_same_program_with_and_without_replays(hru, gradient):
    model = he.HSSM(in_dim=2, out_dim=3, hidden=4, state=2, blocks=3, hru=hru, key=jax.random.PRNGKey(0))
    x, y = jax.random.normal(jax.random.PRNGKey(1), (2, 9, 2)), jnp.array([0, 2])
    optimizer = optax.adam(1e-2)
    opt_state = he.init_optimizer(optimizer, model)
    step = jax.jit(lambda m, s, x, y, k: he.train_step(m, s, x, y, optimizer, gradient=gradient, key=k))
    args = (model, opt_state, x, y, jax.random.PRNGKey(2))
    replayed = step.lower(*args).compile()
    with replaying(False):
        direct = jax.jit(lambda m, s, x, y, k: he.train_step(m, s, x, y, optimizer, gradient=gradient, key=k)
                         ).lower(*args).compile()
    assert _normalised_hlo(replayed) == _normalised_hlo(direct)
    for a, b in zip(jax.tree_util.tree_leaves(eqx.filter(replayed(*args), eqx.is_array)),
                    jax.tree_util.tree_leaves(eqx.filter(direct(*args), eqx.is_array))):
        np.testing.assert_array_equal(a, b)

