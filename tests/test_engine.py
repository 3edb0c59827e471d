"""The RHEL engine: reversibility, scans, RHEL == BPTT, generic HRUs, memory contract (float64)."""
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hamecho
import hamecho.nn.api
from hamecho import BPTT, RHEL, AffineLeapfrog, Leapfrog, RecomputeBlocks
from hamecho.core.choices import Choices, difference_rule
from hamecho.core.engine import run_core
from hamecho.core.hamiltonians import NONLINEAR_HAMILTONIAN, SeparableHamiltonian, quadratic_kinetic
from hamecho.core.integrators import inverse_leapfrog_step, leapfrog_step
from hamecho.nn.layers import HRU, LinearHRU, NonlinearHRU
from hamecho.tools.gradcheck import compare_gradients, named_arrays

pytestmark = pytest.mark.usefixtures("x64")  # tests/conftest.py


def _inputs(shape, seed=1, dtype=jnp.float64):
    return jax.random.normal(jax.random.PRNGKey(seed), shape, dtype)


def _layer(kind, hidden=6, state=4, seed=0, **kwargs):
    cls = {"linear": LinearHRU, "nonlinear": NonlinearHRU}[kind]
    return cls(hidden, state, key=jax.random.PRNGKey(seed), dtype=jnp.float64, **kwargs)


# --- reversibility ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,kwargs", [("linear", {}), ("nonlinear", {"step": 0.1}),
                                         ("nonlinear", {"step": 1e-4})])
def test_echo_with_zero_nudge_retraces_to_the_initial_state(kind, kwargs):
    layer = _layer(kind, **kwargs)
    u = _inputs((1000, 3, 6))
    error = float(layer.retrace_error(u))
    assert error < 1e-12, error
    # and the check can fail: perturbing the drives of the echo breaks the retrace
    from hamecho.core.engine import echo_pass
    theta, drives = layer.core_parameters(), layer.drives(u)
    positions, final = hamecho.Leapfrog().forward(layer.hamiltonian, theta, drives)
    q, p = echo_pass(layer.hamiltonian, hamecho.RHEL(), hamecho.Leapfrog(), theta, drives * 1.001, final,
                     jnp.zeros_like(positions)).end_state
    assert float(jnp.linalg.norm(q) + jnp.linalg.norm(p)) > 1e-8


def test_inverse_leapfrog_step_undoes_the_step():
    layer = _layer("nonlinear", step=0.3)
    theta = layer.core_parameters()
    q, p, u = _inputs((4,), 2), _inputs((4,), 3), _inputs((4,), 4)
    q1, p1, _ = leapfrog_step(NONLINEAR_HAMILTONIAN, theta, q, p, u)
    q0, p0 = inverse_leapfrog_step(NONLINEAR_HAMILTONIAN, theta, q1, p1, u)
    np.testing.assert_allclose(q0, q, rtol=0, atol=1e-14)
    np.testing.assert_allclose(p0, p, rtol=0, atol=1e-14)
    assert float(jnp.max(jnp.abs(q1 - q))) > 1e-3  # the step did move the state


# --- parallel scan == sequential loop -----------------------------------------------------------

def test_parallel_scan_equals_sequential_loop_forward_and_gradients():
    layer = _layer("linear", hidden=5, state=3)
    u = _inputs((100, 2, 5))
    target = _inputs((100, 2, 5), seed=7)

    def loss(layer, integrator):
        return jnp.mean((layer(u, gradient=RHEL(eps=0.3), integrator=integrator) - target) ** 2)

    # jitted: run eagerly, the associative scan's many small operations dispatch one by one (slow, same numbers)
    run = eqx.filter_jit(lambda layer, integrator: layer(u, integrator=integrator))
    seq_out = run(layer, Leapfrog())
    par_out = run(layer, AffineLeapfrog())
    scale = float(jnp.max(jnp.abs(seq_out)))
    assert float(jnp.max(jnp.abs(seq_out - par_out))) / scale < 1e-12
    grad = eqx.filter_jit(eqx.filter_grad(loss))
    g_seq = grad(layer, Leapfrog())
    g_par = grad(layer, AffineLeapfrog())
    for row in compare_gradients(g_par, g_seq):
        assert row["rel_err"] < 1e-12, row


def test_parallel_scan_rejects_a_nonlinear_unit():
    layer = _layer("nonlinear")
    with pytest.raises(ValueError, match="parallel"):
        layer(_inputs((10, 1, 6)), integrator=AffineLeapfrog())


# --- RHEL == BPTT on HSSM stacks -----------------------------------------------------------------

def _problem(hru, *, length=64, blocks=3, task="classification", output_step=1, step=1e-4, seed=0):
    from hamecho.tools.gradcheck import random_problem
    return random_problem(hru=hru, blocks=blocks, hidden=8, state=4, length=length, batch=3, in_dim=3,
                          classes=4, task=task, output_step=output_step, step=step, seed=seed,
                          dtype=jnp.float64)


def _max_rel_err(model, x, y, **rhel):
    _, bptt = hamecho.value_and_grad(model, x, y, gradient=BPTT())
    _, rhel = hamecho.value_and_grad(model, x, y, gradient=RHEL(**rhel))
    return compare_gradients(rhel, bptt)


@pytest.fixture(scope="module")
def linear_problem():
    return _problem("linear")


@pytest.mark.parametrize("eps", [1e-3, 0.1, 1.0])
def test_linear_hssm_rhel_equals_bptt_for_every_array(linear_problem, eps):
    model, x, y = linear_problem
    rows = _max_rel_err(model, x, y, eps=eps)
    names = {(r["block"], r["name"]) for r in rows}
    # every kind of trainable array is covered: HRU A, delta, B, C, D, encoder, GLU, head
    for block in range(3):
        for name in ("hru.a", "hru.steps", "hru.B", "hru.C", "hru.D", "glu.value.weight", "glu.gate.bias"):
            assert (block, name) in names
    assert {(None, "encoder.weight"), (None, "head.weight")} <= names
    for row in rows:
        assert row["rel_err"] < 1e-9, row
        assert abs(row["norm_ratio"] - 1) < 1e-9 and row["cosine"] > 1 - 1e-12, row


def test_linear_regression_head_rhel_equals_bptt():
    model, x, y = _problem("linear", length=40, blocks=2, task="regression", output_step=8)
    assert y.shape == (3, 5, 4)
    for row in _max_rel_err(model, x, y, eps=0.5):
        assert row["rel_err"] < 1e-9, row


def test_rhel_actually_depends_on_the_echo():
    """Sanity of the comparison itself: a wrong echo (one-sided, large eps) is detected."""
    model, x, y = _problem("linear", length=32, blocks=1)
    worst = max(r["rel_err"] for r in _max_rel_err(model, x, y, eps=1.0, estimator="one_sided"))
    assert worst > 1e-6


def test_one_sided_estimator_converges_linearly_in_eps():
    model, x, y = _problem("linear", length=32, blocks=1)
    err = lambda eps: max(r["rel_err"] for r in _max_rel_err(model, x, y, eps=eps, estimator="one_sided")
                          if r["name"].startswith("hru"))
    ratio = err(1e-2) / err(1e-3)
    assert 5 < ratio < 20, ratio


@pytest.fixture(scope="module")
def nonlinear_problem():
    return _problem("nonlinear", step=0.1, length=48)


def test_nonlinear_hssm_rhel_error_shrinks_as_eps_squared(nonlinear_problem):
    model, x, y = nonlinear_problem
    err = lambda eps: max(r["rel_err"] for r in _max_rel_err(model, x, y, eps=eps))
    e1, e2, e4 = err(0.1), err(0.01), err(1e-4)
    assert 50 < e1 / e2 < 200, (e1, e2)
    assert e4 < 1e-6, e4


def test_nonlinear_step_size_is_trained_under_rhel(nonlinear_problem):
    model, x, y = nonlinear_problem
    rows = {(r["block"], r["name"]): r for r in _max_rel_err(model, x, y, eps=1e-3)}
    _, bptt = hamecho.value_and_grad(model, x, y, gradient=BPTT())
    _, rhel = hamecho.value_and_grad(model, x, y, gradient=RHEL(eps=1e-3))
    g = float(rhel.blocks[0].hru.theta["log_step"])
    assert g != 0.0 and abs(g - float(bptt.blocks[0].hru.theta["log_step"])) < 1e-6 * abs(g)
    assert rows[(0, "hru.log_step")]["rel_err"] < 1e-6


def test_direct_difference_agrees_with_quadrature_at_moderate_eps(nonlinear_problem):
    model, x, y = nonlinear_problem
    _, quad = hamecho.value_and_grad(model, x, y, gradient=RHEL(eps=0.05, difference="quadrature"))
    _, direct = hamecho.value_and_grad(model, x, y, gradient=RHEL(eps=0.05, difference="direct"))
    for row in compare_gradients(direct, quad):
        assert row["rel_err"] < 1e-7, row


def test_auto_difference_is_quadrature_chosen_by_accuracy(nonlinear_problem):
    """"auto" = quadrature for every Hamiltonian, dtype and ε (issue #21 item 7): "direct" was never as
    accurate (docs/precision.md); it runs only when asked for. Numerically: auto is the quadrature rule bit
    for bit on the nonlinear HRU in float64 at ε = 0.05, where auto used to subtract directly."""
    for eps in (1.0, 0.1, 1e-3, 1e-4):
        assert difference_rule(RHEL(eps=eps)) == "quadrature"
        assert difference_rule(RHEL(eps=eps, difference="direct")) == "direct"
    model, x, y = nonlinear_problem
    _, auto = hamecho.value_and_grad(model, x, y, gradient=RHEL(eps=0.05))
    _, quadrature = hamecho.value_and_grad(model, x, y, gradient=RHEL(eps=0.05, difference="quadrature"))
    for row in compare_gradients(auto, quadrature):
        assert row["rel_err"] == 0.0, row


# --- generic HRU from user energies ---------------------------------------------------------------

def pendulum_potential(theta, position, drive):
    """V = k(1 − cos φ) − φ·drive, learnable stiffness k per channel."""
    return theta["k"] * (1.0 - jnp.cos(position)) - position * drive


def pendulum_step(theta):
    return jnp.exp(theta["log_step"])


PENDULUM = SeparableHamiltonian(kinetic=quadratic_kinetic, potential=pendulum_potential,
                                step_size=pendulum_step, name="pendulum")


def _pendulum_layer(kinetic=quadratic_kinetic):
    keys = jax.random.split(jax.random.PRNGKey(3), 4)
    ham = SeparableHamiltonian(kinetic=kinetic, potential=pendulum_potential, step_size=pendulum_step,
                               name="pendulum") if kinetic is not quadratic_kinetic else PENDULUM
    theta = {"k": jax.random.uniform(keys[0], (4,), jnp.float64, 0.5, 2.0),
             "log_step": jnp.asarray(math.log(0.2))}
    return HRU(ham, theta, 0.5 * _inputs((4, 3), 5), 0.5 * _inputs((3, 4), 6), _inputs((3,), 7))


def test_generic_pendulum_hru_gets_correct_rhel_gradients():
    layer = _pendulum_layer()
    u = _inputs((80, 2, 3), 8)
    target = _inputs((80, 2, 3), 9)

    def loss(layer, gradient):
        return jnp.mean((layer(u, gradient=gradient) - target) ** 2)

    bptt = eqx.filter_grad(loss)(layer, BPTT())
    for eps, tol in ((1e-2, 1e-3), (1e-4, 1e-7)):
        rhel = eqx.filter_grad(loss)(layer, RHEL(eps=eps))
        for row in compare_gradients(rhel, bptt):
            assert row["rel_err"] < tol, (eps, row)
    assert float(jnp.abs(bptt.theta["k"]).max()) > 0
    # (a driven pendulum is chaotic: over thousands of steps rounding grows; 300 steps stay exact)
    assert float(layer.retrace_error(_inputs((300, 2, 3), 10))) < 1e-12


def test_kinetic_energy_that_is_not_even_is_rejected():
    def odd_kinetic(theta, momentum):
        return 0.5 * momentum**2 + 0.1 * momentum**3

    with pytest.raises(ValueError, match="not even in the momentum"):
        _pendulum_layer(kinetic=odd_kinetic)


# --- memory contract --------------------------------------------------------------------------------

def _residual_sizes(algo, length, batch=2, channels=4):
    layer = _layer("linear", hidden=channels, state=channels // 2)
    theta, drives = layer.core_parameters(), _inputs((length, batch, channels))
    choices = Choices(gradient=RHEL() if algo == "rhel" else BPTT())
    _, vjp_fn = jax.vjp(lambda th, d: run_core(layer.hamiltonian, choices, th, d), theta, drives)
    return sum(leaf.size for leaf in jax.tree_util.tree_leaves(vjp_fn) if hasattr(leaf, "size"))


def test_rhel_core_saves_only_its_inputs_and_final_state():
    batch, channels = 2, 4
    small, large = _residual_sizes("rhel", 100), _residual_sizes("rhel", 400)
    # growing L by 300 adds exactly the 300 extra drive steps and nothing else
    assert large - small == 300 * batch * channels
    theta_size, final_state = 2 * channels, 2 * batch * channels
    assert small == theta_size + 100 * batch * channels + final_state
    # the check can fail: BPTT through the scan stores more per step
    bptt_growth = _residual_sizes("bptt", 400) - _residual_sizes("bptt", 100)
    assert bptt_growth > 300 * batch * channels


def _block_memory_problem(hru, length):
    model = hamecho.HSSM(in_dim=3, out_dim=4, hidden=16, state=4, blocks=3, hru=hru, step=0.1,
                         key=jax.random.PRNGKey(0))
    x = _inputs((2, length, 3))
    return model, x, jnp.array([0, 3])


def _training_grads(model, x, y, gradient, recompute):
    params, static = eqx.partition(model, eqx.is_inexact_array)
    memory = RecomputeBlocks() if recompute else None
    loss = lambda p: hamecho.nn.api.training_loss(eqx.combine(p, static), x, y, gradient=gradient, memory=memory,
                                                  key=jax.random.PRNGKey(5))
    return jax.value_and_grad(loss, has_aux=True), params


# BPTT's cases with -m slow (CI time): recomputation is autodiff's own jax.checkpoint there; RHEL's are the new path
@pytest.mark.parametrize("hru", ["linear", "nonlinear"])
@pytest.mark.parametrize("algo", ["rhel", pytest.param("bptt", marks=pytest.mark.slow)])
def test_recompute_blocks_gives_the_same_loss_gradients_and_statistics(hru, algo):
    model, x, y = _block_memory_problem(hru, 60)
    results = []
    for recompute in (False, True):
        fn, params = _training_grads(model, x, y, RHEL() if algo == "rhel" else BPTT(), recompute)
        (loss, stats), grads = jax.jit(fn)(params)
        results.append((loss, stats, grads))
    # Same computation, different fusion: rounding only (RHEL's direct echo difference divides it by eps).
    for a, b in zip(jax.tree_util.tree_leaves(results[0]), jax.tree_util.tree_leaves(results[1]), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12)


def test_recompute_blocks_lowers_the_compiled_step_memory():
    """XLA's own buffer analysis of the compiled gradient: with recompute_blocks each block keeps only its
    input. (jax.checkpoint on the block leaves this number unchanged on XLA CPU, see models.py.)"""
    model, x, y = _block_memory_problem("linear", 2000)
    temps = {}
    for recompute in (False, True):
        fn, params = _training_grads(model, x, y, RHEL(), recompute)
        temps[recompute] = jax.jit(fn).lower(params).compile().memory_analysis().temp_size_in_bytes
    assert temps[True] < 0.6 * temps[False], temps


# --- API contract -----------------------------------------------------------------------------------

def test_value_and_grad_matches_filter_grad_structure_and_runs_in_float32_under_jit():
    model = hamecho.HSSM(in_dim=2, out_dim=3, hidden=4, state=2, blocks=1, dtype=jnp.float32,
                         key=jax.random.PRNGKey(0))
    x = _inputs((2, 10, 2), dtype=jnp.float32)
    y = jnp.array([0, 2])
    loss, grads = eqx.filter_jit(lambda m, x, y: hamecho.value_and_grad(m, x, y, gradient=RHEL()))(model, x, y)
    reference = eqx.filter_grad(lambda m: hamecho.nn.api.training_loss(m, x, y, gradient=BPTT())[0])(model)
    assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(reference)
    assert loss.dtype == jnp.float32
    assert all(a.dtype == jnp.float32 for _, _, a in [(0, 0, g) for g in jax.tree_util.tree_leaves(grads)])
    for row in compare_gradients(grads, reference):
        assert row["cosine"] > 0.999, row


def test_predict_shapes():
    x = _inputs((2, 24, 3))
    clf = hamecho.HSSM(in_dim=3, out_dim=5, hidden=4, state=2, blocks=2, key=jax.random.PRNGKey(0))
    assert hamecho.predict(clf, x).shape == (2, 5)
    reg = hamecho.HSSM(in_dim=3, out_dim=2, hidden=4, state=2, blocks=1, task="regression", output_step=8,
                       hru="nonlinear", key=jax.random.PRNGKey(0))
    out = hamecho.predict(reg, x)
    assert out.shape == (2, 3, 2) and float(jnp.max(jnp.abs(out))) <= 1.0


@pytest.mark.parametrize("kwargs,match", [
    ({"hru": "quadratic"}, "hru must be one of"),
    ({"task": "ranking"}, "task must be one of"),
    ({"hidden": 0}, "hidden must be a positive integer"),
    ({"state": -2}, "state must be a positive integer"),
    ({"blocks": 0}, "blocks must be a positive integer"),
    ({"in_dim": 0}, "in_dim must be a positive integer"),
    ({"output_step": 0}, "output_step must be a positive integer"),
])
def test_bad_model_arguments(kwargs, match):
    args = dict(in_dim=3, out_dim=4, hidden=4, state=2, blocks=1, key=jax.random.PRNGKey(0)) | kwargs
    with pytest.raises(ValueError, match=match):
        hamecho.HSSM(**args)


@pytest.fixture(scope="module")
def tiny_model():
    return hamecho.HSSM(in_dim=3, out_dim=4, hidden=4, state=2, blocks=1, key=jax.random.PRNGKey(0))


@pytest.mark.parametrize("x_shape,y,kwargs,match", [
    ((2, 10, 3), [0, 1], {"algo": "adjoint"}, "algo must be one of"),
    ((2, 10, 3), [0, 1], {"eps": 0.0}, "eps must be a finite number > 0"),
    ((2, 10, 3), [0, 1], {"eps": -1.0}, "eps must be a finite number > 0"),
    ((10, 3), [0, 1], {}, r"x must have shape \(batch, length, in_dim\)"),
    ((2, 10, 5), [0, 1], {}, "expects in_dim=3"),
    ((2, 10, 3), [0, 4], {}, "labels in"),
    ((2, 10, 3), [0, -1], {}, "labels in"),
    ((2, 10, 3), [0, 1, 2], {}, "y must be integer labels of shape"),
])
def test_bad_inputs_raise_value_errors(tiny_model, x_shape, y, kwargs, match):
    with pytest.raises(ValueError, match=match):
        hamecho.value_and_grad(tiny_model, _inputs(x_shape), jnp.array(y), **kwargs)


def test_nan_in_x_is_rejected(tiny_model):
    x = _inputs((2, 10, 3)).at[1, 4, 0].set(jnp.nan)
    with pytest.raises(ValueError, match="NaN or Inf"):
        hamecho.value_and_grad(tiny_model, x, jnp.array([0, 1]))
    with pytest.raises(ValueError, match="NaN or Inf"):
        hamecho.predict(tiny_model, x.at[0, 0, 0].set(jnp.inf))


def test_named_arrays_excludes_norm_statistics(tiny_model):
    names = [name for _, name, _ in named_arrays(tiny_model)]
    assert not any(n.startswith("norm") for n in names) and "hru.B" in names


def test_checkpointed_bptt_equals_bptt():
    """BPTT with jax.checkpoint over chunks of time (L not a multiple of the chunk) is the same gradient."""
    model, x, y = _problem("nonlinear", length=50, blocks=2, step=0.1)
    _, plain = hamecho.value_and_grad(model, x, y, gradient=BPTT())
    _, chunked = hamecho.value_and_grad(model, x, y, gradient=BPTT(checkpoint_every=7), integrator=Leapfrog())
    for row in compare_gradients(chunked, plain):
        assert row["rel_err"] < 1e-12, row
    with pytest.raises(ValueError, match="needs a sequential scan"):
        hamecho.value_and_grad(model, x, y, gradient=BPTT(checkpoint_every=7), integrator=AffineLeapfrog())
