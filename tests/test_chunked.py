"""Blocks run over time chunks (memory=TimeChunks(K)) and the core that starts from a given state."""
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hamecho import BPTT, RHEL, AffineLeapfrog, FixedPointLeapfrog, TimeChunks
from hamecho.core.choices import Choices
from hamecho.core.engine import run_core
from hamecho.nn.api import training_loss
from hamecho.nn.layers import LinearHRU, NonlinearHRU
from hamecho.nn.memory import chunk_plan
from hamecho.tools.gradcheck import compare_gradients, random_problem

pytestmark = pytest.mark.usefixtures("x64")


def _normal(shape, seed):
    return jax.random.normal(jax.random.PRNGKey(seed), shape, jnp.float64)


def _leaves_rel_err(a, b):
    return [float(jnp.max(jnp.abs(x - y)) / jnp.max(jnp.abs(y)))
            for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))]


# --- the core with an initial state -------------------------------------------------------------

@pytest.mark.parametrize("kind,kwargs,eps,tol", [("linear", {}, 0.3, 1e-12), ("nonlinear", {"step": 0.1}, 1e-4, 1e-6)])
@pytest.mark.parametrize("estimator", ["two_sided", "one_sided"])
def test_core_with_state_rhel_gives_bptt_gradients_for_params_drives_and_both_states(kind, kwargs, eps, tol, estimator):
    cls = {"linear": LinearHRU, "nonlinear": NonlinearHRU}[kind]
    layer = cls(6, 4, key=jax.random.PRNGKey(0), dtype=jnp.float64, **kwargs)
    theta, size = layer.core_parameters(), layer.state_size
    drives = _normal((50, 2, size), 1)
    initial = (_normal((2, size), 2), _normal((2, size), 3))
    targets = [_normal(s, 4 + i) for i, s in enumerate([(50, 2, size), (2, size), (2, size)])]

    def loss(theta, drives, initial, choices):
        # depends on the positions, the final position and (nonlinearly) the final momentum
        positions, (q, p) = run_core(layer.hamiltonian, choices, theta, drives, initial)
        return jnp.sum(jnp.sin(positions) * targets[0]) + jnp.sum(q * targets[1]) + jnp.sum(jnp.cos(p) * targets[2])

    if estimator == "one_sided":
        eps, tol = 1e-5, 1e-4  # its parameter gradients have an O(ε) bias, on the linear HRU too
    bptt = jax.grad(loss, argnums=(0, 1, 2))(theta, drives, initial, Choices(gradient=BPTT()))
    rhel = jax.grad(loss, argnums=(0, 1, 2))(theta, drives, initial,
                                                 Choices(gradient=RHEL(eps=eps, estimator=estimator)))
    errors = _leaves_rel_err(rhel, bptt)
    assert len(errors) == len(jax.tree_util.tree_leaves(theta)) + 3  # θ, drives, initial position and momentum
    assert max(errors) < tol, errors
    # the initial-state cotangents are not trivially zero
    assert float(jnp.max(jnp.abs(bptt[2][0]))) > 1e-3 and float(jnp.max(jnp.abs(bptt[2][1]))) > 1e-3


def test_core_with_state_is_the_whole_sequence_split_in_two():
    layer = NonlinearHRU(6, 4, key=jax.random.PRNGKey(0), step=0.1, dtype=jnp.float64)
    theta, drives = layer.core_parameters(), _normal((40, 2, 4), 1)
    choices = Choices()
    zeros = (jnp.zeros((2, 4)), jnp.zeros((2, 4)))
    whole, final = run_core(layer.hamiltonian, choices, theta, drives, zeros)
    first, middle = run_core(layer.hamiltonian, choices, theta, drives[:15], zeros)
    second, final2 = run_core(layer.hamiltonian, choices, theta, drives[15:], middle)
    np.testing.assert_allclose(jnp.concatenate([first, second]), whole, rtol=0, atol=1e-13)
    np.testing.assert_allclose(final2[1], final[1], rtol=0, atol=1e-13)


# --- chunked blocks ----------------------------------------------------------------------------------

@pytest.mark.parametrize("length,chunk,expected", [(1000, 1024, (1, 1000)), (17984, 1024, (32, 562)),
                                                  (49920, 1024, (52, 960)), (130, 7, (26, 5)),
                                                  (131, 64, (3, 44)), (5, 100, (1, 5))])
def test_padded_chunk_plan(length, chunk, expected):
    """TimeChunks' plan: whole chunks, padded after the end where no divisor fits (the unpadded plan of
    Streaming is tested in tests/test_streaming.py; the divisor, when there is one, is the same)."""
    n_chunks, size, rest = chunk_plan(length, chunk, padded=True)
    assert (n_chunks, size) == expected and rest == 0
    if length % size == 0:
        assert chunk_plan(length, chunk) == (n_chunks, size, 0)
    assert n_chunks * size >= length > (n_chunks - 1) * size and size <= max(chunk, 1)


def _problem(hru, step):
    return random_problem(hru=hru, blocks=2, hidden=8, state=4, length=131, batch=3, in_dim=3, classes=2,
                          task="regression", output_step=8, step=step, seed=0, dtype=jnp.float64)


def _value_and_grad(model, x, y, algo, eps, key=None, memory=None):
    gradient = RHEL(eps=eps) if algo == "rhel" else BPTT()
    loss = lambda m: training_loss(m, x, y, gradient=gradient, memory=memory, key=key)
    return eqx.filter_value_and_grad(loss, has_aux=True)(model)


@pytest.mark.parametrize("hru,step,eps,tol", [("linear", 1e-4, 0.1, 1e-12), ("nonlinear", 0.05, 1e-4, 1e-9)])
@pytest.mark.parametrize("algo", ["rhel", "bptt"])
def test_chunked_blocks_give_the_same_loss_stats_and_gradients(hru, step, eps, tol, algo, chunk=7):
    """19 chunks of 7 steps for L = 131, the last one padded."""
    model, x, y = _problem(hru, step)
    (loss0, stats0), grads0 = _value_and_grad(model, x, y, algo, eps)
    (loss1, stats1), grads1 = _value_and_grad(model, x, y, algo, eps, memory=TimeChunks(chunk))
    assert abs(float(loss1 - loss0)) < 1e-12 * abs(float(loss0))
    for a, b in zip(jax.tree_util.tree_leaves(stats1), jax.tree_util.tree_leaves(stats0)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    rows = compare_gradients(grads1, grads0)
    assert len(rows) > 10 and max(r["rel_err"] for r in rows) < tol, rows
    if algo == "rhel":  # and against autodiff of the plain model
        (_, _), reference = _value_and_grad(model, x, y, "bptt", eps)
        rows = compare_gradients(grads1, reference)
        assert max(r["rel_err"] for r in rows) < tol, rows


# the nonlinear case with -m slow (CI time; the dropout bookkeeping is the same for both HRUs)
@pytest.mark.parametrize("hru,step,eps,tol", [("linear", 1e-4, 0.1, 1e-12),
                                              pytest.param("nonlinear", 0.05, 1e-4, 1e-9, marks=pytest.mark.slow)])
def test_chunked_blocks_with_dropout_rhel_equals_autodiff_of_the_same_draws(hru, step, eps, tol):
    """Chunked dropout draws per chunk (fold_in): recomputed identically in the backward pass, so RHEL
    through the chunked model matches autodiff through the same chunked model; and they are real draws."""
    model, x, y = _problem(hru, step)
    key = jax.random.PRNGKey(7)
    (loss_r, _), rhel = _value_and_grad(model, x, y, "rhel", eps, key, memory=TimeChunks(7))
    (loss_b, _), bptt = _value_and_grad(model, x, y, "bptt", eps, key, memory=TimeChunks(7))
    (loss_plain, _), _ = _value_and_grad(model, x, y, "bptt", eps, None, memory=TimeChunks(7))
    assert abs(float(loss_r - loss_b)) < 1e-12 * abs(float(loss_b))
    assert abs(float(loss_b - loss_plain)) > 1e-6 * abs(float(loss_plain))  # dropout did something
    rows = compare_gradients(rhel, bptt)
    assert len(rows) > 10 and max(r["rel_err"] for r in rows) < tol, rows


def test_chunked_blocks_in_inference_mode_match():
    model, x, _ = _problem("nonlinear", 0.05)
    plain = model(x, gradient=BPTT(), train=False)[0]
    chunked = model(x, gradient=BPTT(), memory=TimeChunks(10), train=False)[0]
    np.testing.assert_allclose(chunked, plain, rtol=1e-12, atol=1e-14)


def test_chunked_blocks_store_much_less_under_autodiff():
    """XLA's own count of the temporary buffers of one value-and-grad, float32 model, L = 4,000."""
    model, x, y = random_problem(hru="linear", blocks=3, hidden=32, state=8, length=4000, batch=2, in_dim=3,
                                 classes=1, task="regression", output_step=100, step=1e-4, seed=0,
                                 dtype=jnp.float32)

    def temp_bytes(memory=None):
        loss = lambda m, x, y: training_loss(m, x, y, gradient=RHEL(eps=0.1), memory=memory,
                                             key=jax.random.PRNGKey(0))[0]
        fn = eqx.filter_jit(eqx.filter_value_and_grad(loss))
        return fn.lower(model, x, y).compile().compiled.memory_analysis().temp_size_in_bytes

    activation = 4000 * 2 * 32 * 4  # one (L, N, H) float32 array
    plain, chunked = temp_bytes(), temp_bytes(TimeChunks(250))
    # plain autodiff keeps about ten (L, N, H) arrays per block; a chunked block keeps its input
    assert chunked < 0.25 * plain, (plain / activation, chunked / activation)
    assert chunked < (3 * 2 + 4) * activation, chunked / activation


@pytest.mark.parametrize("size", [0, 2.5])
def test_time_chunks_size_is_validated(size):
    with pytest.raises(ValueError, match="TimeChunks size must be a positive integer"):
        TimeChunks(size)


@pytest.mark.parametrize("integrator,match", [(AffineLeapfrog(), "needs a sequential scan"),
                                              (FixedPointLeapfrog(), "sequential scan in floating point")])
def test_time_chunks_need_a_leapfrog(integrator, match):
    with pytest.raises(ValueError, match=match):
        Choices(integrator=integrator, memory=TimeChunks(8))
