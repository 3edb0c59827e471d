"""The keyword spelling (issue #21): the old Python keywords are accepted at hamecho.value_and_grad and
hamecho.train_step only, give the same results as the strategy objects and warn once naming them; layers and
models take strategy objects only; the spelling's own checks."""
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import hamecho as he
from hamecho.core.choices import Choices
from hamecho.nn import keywords
from hamecho.nn.keywords import choices_from_keywords

pytestmark = pytest.mark.usefixtures("x64")


@pytest.fixture
def fresh_warnings(monkeypatch):
    """Each deprecation message is shown once per process: start from none shown."""
    monkeypatch.setattr(keywords, "WARNED", set())


@pytest.fixture(scope="module")
def problem():
    model = he.HSSM(in_dim=3, out_dim=4, hidden=6, state=3, blocks=1, hru="nonlinear", step=0.3,
                    key=jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 10, 3))
    return model, x, jnp.array([0, 3, 1])


def leaves(tree):
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(tree)]


def test_old_keywords_at_value_and_grad_give_the_same_result_and_warn_once(problem, fresh_warnings):
    model, x, y = problem
    with pytest.warns(DeprecationWarning) as caught:
        old = he.value_and_grad(model, x, y, algo="bptt", block_chunk=5)
    new = he.value_and_grad(model, x, y, gradient=he.BPTT(), memory=he.TimeChunks(5))
    for a, b in zip(leaves(old), leaves(new), strict=True):
        np.testing.assert_array_equal(a, b)
    (message,) = [str(w.message) for w in caught]
    assert message == ("hamecho.value_and_grad: the keywords algo=, block_chunk= are deprecated (same results); "
                       "write hamecho.value_and_grad(..., gradient=hamecho.BPTT(checkpoint_every=None), "
                       "memory=hamecho.TimeChunks(size=5))")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second call is silent
        he.value_and_grad(model, x, y, algo="bptt", block_chunk=5)


def test_old_keywords_and_core_options_at_train_step(problem, fresh_warnings):
    model, x, y = problem
    optimizer = optax.adam(1e-2)
    state = he.init_optimizer(optimizer, model)
    key = jax.random.PRNGKey(2)
    new = he.train_step(model, state, x, y, optimizer, gradient=he.RHEL(eps=0.01, estimator="one_sided"),
                        integrator=he.AutoLeapfrog(dtype="float64"), key=key)
    with pytest.warns(DeprecationWarning, match=r"hamecho.train_step: the keywords eps=, estimator= are deprecated"):
        by_keywords = he.train_step(model, state, x, y, optimizer, eps=0.01, estimator="one_sided", key=key)
    with pytest.warns(DeprecationWarning, match=r"hamecho.train_step: a CoreOptions is deprecated .* write "
                                                r"hamecho.train_step\(\.\.\., gradient=hamecho.RHEL\(eps=0.01"):
        by_options = he.train_step(model, state, x, y, optimizer,
                                   he.CoreOptions(eps=0.01, estimator="one_sided", core_dtype="float64"), key=key)
    for old in (by_keywords, by_options):
        for a, b in zip(leaves(old), leaves(new), strict=True):
            np.testing.assert_array_equal(a, b)
    with pytest.warns(DeprecationWarning, match="integrator="):  # the old string integrator keyword
        he.train_step(model, state, x, y, optimizer, integrator="fixed_point", fraction_bits=40)


def test_the_two_spellings_do_not_mix_and_unknown_keywords_are_named(problem):
    model, x, y = problem
    with pytest.raises(ValueError, match="give the choices once"):
        he.value_and_grad(model, x, y, gradient=he.BPTT(), eps=0.1)
    with pytest.raises(ValueError, match="give the choices once"):
        he.value_and_grad(model, x, y, he.CoreOptions(), memory=he.RecomputeBlocks())
    with pytest.raises(ValueError, match="positional options must be a hamecho.CoreOptions"):
        he.value_and_grad(model, x, y, Choices())
    with pytest.raises(TypeError, match=r"unexpected keyword 'epsilon'; the choices are gradient="):
        he.value_and_grad(model, x, y, epsilon=0.1)


def test_layers_and_models_take_strategy_objects_only(problem):
    model, x, _ = problem
    u = jnp.zeros((10, 3, 6))
    layer = model.blocks[0].hru
    with pytest.raises(TypeError):
        model(x, algo="bptt")
    with pytest.raises(TypeError):
        model(x, he.CoreOptions())
    with pytest.raises(TypeError):
        model.blocks[0](u, he.CoreOptions())
    with pytest.raises(TypeError):
        layer(u, he.CoreOptions())
    with pytest.raises(TypeError):
        layer.retrace_error(u, he.CoreOptions())
    with pytest.raises(TypeError):
        he.nn.api.training_loss(model, x, jnp.array([0, 1, 2]), he.CoreOptions())
    with pytest.raises(TypeError):
        model.hru_inputs(x, he.CoreOptions())
    with pytest.raises(TypeError):  # the old form (hamiltonian, theta, drives, options) is gone
        he.retrace_error(layer.hamiltonian, layer.core_parameters(), layer.drives(u))
    with pytest.raises(ValueError, match="for a bare Hamiltonian: hamecho.core.engine.retrace_error"):
        he.retrace_error(layer.hamiltonian, u)


def test_the_translation_of_the_keywords():
    assert choices_from_keywords() == Choices() == Choices(gradient=he.RHEL(), integrator=he.AutoLeapfrog())
    assert choices_from_keywords(algo="bptt", checkpoint_chunk=7, scan="sequential", core_dtype="input") == Choices(
        gradient=he.BPTT(checkpoint_every=7), integrator=he.Leapfrog(dtype="input"))
    assert choices_from_keywords(core_dtype="float64", recompute_blocks=True) == Choices(
        integrator=he.AutoLeapfrog(dtype="float64"), memory=he.RecomputeBlocks())
    assert choices_from_keywords(integrator="fixed_point", fraction_bits=40).integrator == \
        he.FixedPointLeapfrog(fraction_bits=40)
    assert he.CoreOptions(eps=0.2).choices == Choices(gradient=he.RHEL(eps=0.2))


@pytest.mark.parametrize("kwargs,match", [
    ({"algo": "rhel", "checkpoint_chunk": 7}, "checkpoint_chunk is BPTT's .* needs algo='bptt'"),
    ({"integrator": "fixed_point", "scan": "parallel"}, "is a sequential scan .* choose one"),
    ({"integrator": "fixed"}, "integrator must be one of"),
    ({"scan": "diagonal"}, "scan must be one of"),
    ({"algo": "bptt", "integrator": "fixed_point"}, "use gradient=hamecho.RHEL()"),  # a rule of check_compatible
    ({"block_chunk": 8, "recompute_blocks": True}, "recompute_blocks and block_chunk .* choose one"),
    ({"fraction_bits": 63}, "fraction_bits"),
    ({"core_dtype": "float16"}, "dtype must be one of"),
])
def test_bad_keywords(kwargs, match):
    with pytest.raises(ValueError, match=match):
        he.CoreOptions(**kwargs)
