"""The Equinox and Optax idioms a user writes meet hamecho objects (issue #21): each works, or fails in one
clear sentence.

    opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))   # the Equinox optimiser state
    eqx.filter_jit(he.train_step), eqx.filter_value_and_grad over HSSM.__call__, optax.chain,
    optax.MultiSteps, eqx.tree_serialise_leaves / tree_deserialise_leaves
"""
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import hamecho as he

pytestmark = pytest.mark.usefixtures("x64")


@pytest.fixture(scope="module")
def problem():
    model = he.HSSM(in_dim=3, out_dim=4, hidden=6, state=3, blocks=2, key=jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 12, 3))
    y = jnp.array([0, 3, 1, 2])
    return model, x, y


def arrays(tree) -> list[np.ndarray]:
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_array))]


def assert_equal(a, b):
    left, right = arrays(a), arrays(b)
    assert len(left) == len(right) and left
    for u, v in zip(left, right):
        np.testing.assert_array_equal(u, v)


def assert_close(a, b, tol=1e-12):
    left, right = arrays(a), arrays(b)
    assert len(left) == len(right) and left
    for u, v in zip(left, right):
        np.testing.assert_allclose(u, v, rtol=tol, atol=tol)


def equinox_state(optimizer, model):
    return optimizer.init(eqx.filter(model, eqx.is_inexact_array))


# --- the optimiser state built the Equinox way ---------------------------------------------------------

@pytest.mark.parametrize("optimizer", [optax.adam(1e-2), optax.adamw(1e-2, weight_decay=0.1)],
                         ids=["adam", "adamw"])
def test_train_step_takes_the_equinox_optimizer_state(problem, optimizer):
    """The Equinox state covers the norm running statistics too; the step overwrites them with the batch's
    statistics, so it trains exactly as with he.init_optimizer, even where the optimiser would move them
    (adamw's weight decay)."""
    model, x, y = problem
    key = jax.random.PRNGKey(2)
    ours = he.train_step(model, he.init_optimizer(optimizer, model), x, y, optimizer, key=key)
    theirs = he.train_step(model, equinox_state(optimizer, model), x, y, optimizer, key=key)
    assert_equal(ours[0], theirs[0])
    assert float(ours[2]) == float(theirs[2])
    # the statistics are the step's, not the optimiser's: the running mean moved off its initial zeros
    assert float(jnp.max(jnp.abs(theirs[0].blocks[0].norm.running_mean))) > 0
    again = he.train_step(theirs[0], theirs[1], x, y, optimizer, key=key)  # and the returned state goes on
    assert_equal(again[0], he.train_step(ours[0], ours[1], x, y, optimizer, key=key)[0])


def test_a_state_of_another_model_is_refused_in_one_sentence(problem):
    model, x, y = problem
    optimizer = optax.adam(1e-2)
    other = he.HSSM(in_dim=3, out_dim=4, hidden=6, state=3, blocks=1, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=r"^opt_state does not fit this model and optimizer: build it with "
                                         r"hamecho\.init_optimizer\(optimizer, model\)"):
        he.train_step(model, he.init_optimizer(optimizer, other), x, y, optimizer)
    with pytest.raises(ValueError, match=r"hamecho\.init_optimizer"):  # another optimizer's state
        he.train_step(model, he.init_optimizer(optax.sgd(1e-2), model), x, y, optimizer)


# --- the training step written the Equinox way ------------------------------------------------------------

def equinox_step(optimizer, gradient):
    """What an Equinox user writes: filter_value_and_grad over the model's __call__, an optax update over the
    inexact arrays, the norm statistics kept."""

    @eqx.filter_value_and_grad(has_aux=True)
    def loss_fn(model, x, y, key):
        logits, stats = model(x, gradient=gradient, train=True, key=key)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), stats

    @eqx.filter_jit
    def step(model, opt_state, x, y, key):
        (loss, stats), grads = loss_fn(model, x, y, key)
        params = eqx.filter(model, eqx.is_inexact_array)
        updates, opt_state = optimizer.update(eqx.filter(grads, eqx.is_inexact_array), opt_state, params)
        return eqx.apply_updates(model, updates).with_norm_stats(stats), opt_state, loss

    return step


@pytest.mark.parametrize("gradient", [he.RHEL(), he.BPTT()], ids=["rhel", "bptt"])
def test_filter_value_and_grad_over_hssm_call_is_value_and_grad(problem, gradient):
    model, x, y = problem
    key = jax.random.PRNGKey(3)

    @eqx.filter_value_and_grad(has_aux=True)
    def loss_fn(model):
        logits, stats = model(x, gradient=gradient, train=True, key=key)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), stats

    (loss, stats), grads = loss_fn(model)
    (he_loss, he_stats), he_grads = he.value_and_grad(model, x, y, gradient=gradient, key=key, return_stats=True)
    assert_close((loss, stats, grads), (he_loss, he_stats, he_grads))
    assert float(jnp.max(jnp.abs(grads.blocks[0].hru.B))) > 0


def test_the_equinox_training_step_is_train_step_under_optax_chain(problem):
    """eqx.filter_jit around a hand-written step, and around he.train_step itself, with an optax.chain."""
    model, x, y = problem
    optimizer = optax.chain(optax.clip_by_global_norm(0.05), optax.sgd(0.5))
    key = jax.random.PRNGKey(4)
    state = equinox_state(optimizer, model)
    theirs = equinox_step(optimizer, he.RHEL())(model, state, x, y, key)
    jitted_api = eqx.filter_jit(he.train_step)
    ours = jitted_api(model, state, x, y, optimizer, gradient=he.RHEL(), key=key)
    assert_close(ours, theirs)
    # the clipping took part: the step is shorter than plain SGD's
    plain = optax.sgd(0.5)
    unclipped = he.train_step(model, he.init_optimizer(plain, model), x, y, plain, key=key)[0]
    trained = lambda m: jax.tree_util.tree_leaves(eqx.filter(m, he.trainable(m)))
    moved = lambda m: float(jnp.sqrt(sum(jnp.sum((a - b) ** 2) for a, b in zip(trained(m), trained(model)))))
    assert moved(ours[0]) == pytest.approx(0.5 * 0.05, rel=1e-9)
    assert moved(ours[0]) < 0.5 * moved(unclipped)


def test_multisteps_accumulates_then_steps(problem):
    """optax.MultiSteps: the first train_step only accumulates (the arrays stay, the statistics move on), the
    k-th applies the mean gradient of the k batches."""
    model, x, y = problem
    multi = optax.MultiSteps(optax.sgd(0.5), every_k_schedule=2)
    state = he.init_optimizer(multi, model)
    first, state, _ = he.train_step(model, state, x[:2], y[:2], multi)
    np.testing.assert_array_equal(first.blocks[0].hru.B, model.blocks[0].hru.B)
    assert not np.array_equal(first.blocks[0].norm.running_mean, model.blocks[0].norm.running_mean)
    second, _, _ = he.train_step(first, state, x[2:], y[2:], multi)
    g0 = he.value_and_grad(model, x[:2], y[:2])[1].blocks[0].hru.B
    g1 = he.value_and_grad(model, x[2:], y[2:])[1].blocks[0].hru.B
    expected = model.blocks[0].hru.B - 0.5 * (g0 + g1) / 2
    assert float(jnp.max(jnp.abs(g0 - g1))) > 1e-3  # two different batches: the mean is neither alone
    np.testing.assert_allclose(second.blocks[0].hru.B, expected, rtol=1e-7, atol=1e-9)
    # the transformation MultiSteps wraps as a GradientTransformation works the same way
    transformation = multi.gradient_transformation()
    via = he.train_step(model, equinox_state(transformation, model), x[:2], y[:2], transformation)[0]
    assert_equal(via, first)


def test_serialise_and_deserialise_a_run_mid_training(problem, tmp_path):
    """eqx.tree_serialise_leaves of the model and the optimiser state, read back into freshly built ones of the
    same shapes (another key): the run goes on bit for bit."""
    model, x, y = problem
    optimizer = optax.adam(1e-2)
    key = jax.random.PRNGKey(5)
    stepped, state, _ = he.train_step(model, he.init_optimizer(optimizer, model), x, y, optimizer, key=key)
    eqx.tree_serialise_leaves(tmp_path / "model.eqx", stepped)
    eqx.tree_serialise_leaves(tmp_path / "opt.eqx", state)
    like = he.HSSM(in_dim=3, out_dim=4, hidden=6, state=3, blocks=2, key=jax.random.PRNGKey(99))
    loaded = eqx.tree_deserialise_leaves(tmp_path / "model.eqx", like)
    loaded_state = eqx.tree_deserialise_leaves(tmp_path / "opt.eqx", he.init_optimizer(optimizer, like))
    assert_equal(loaded, stepped)  # the running statistics come back too
    assert_equal(he.train_step(loaded, loaded_state, x, y, optimizer, key=key),
                 he.train_step(stepped, state, x, y, optimizer, key=key))
    np.testing.assert_array_equal(he.predict(loaded, x), he.predict(stepped, x))
