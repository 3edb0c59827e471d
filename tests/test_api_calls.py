"""Every way of calling the public API (issue #16): jit with data passed or closed over, vmap, layouts,
and an HRU layer inside an Equinox model of the user's own (the example of docs/api.md)."""
import re
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import hamecho as he
from hamecho.tools.gradcheck import compare_gradients

pytestmark = pytest.mark.usefixtures("x64")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def problem():
    model = he.HSSM(in_dim=3, out_dim=4, hidden=6, state=3, blocks=1, key=jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 12, 3))
    y = jnp.array([0, 3, 1, 2])
    return model, x, y


def _same(a, b, tol=1e-12):
    for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=tol, atol=tol)


def test_value_and_grad_under_jit_with_data_closed_over_or_passed(problem):
    model, x, y = problem
    eager = he.value_and_grad(model, x, y)
    closed = eqx.filter_jit(lambda m: he.value_and_grad(m, x, y))(model)
    passed = eqx.filter_jit(lambda m, x, y: he.value_and_grad(m, x, y))(model, x, y)
    with_numpy = eqx.filter_jit(lambda m: he.value_and_grad(m, np.asarray(x), np.asarray(y)))(model)
    plain_jit = jax.jit(lambda x, y: he.value_and_grad(model, x, y)[0])(x, y)
    for result in (closed, passed, with_numpy):
        _same(result, eager)
    _same(plain_jit, eager[0])


def test_concrete_inputs_are_still_checked_inside_jit(problem):
    model, x, y = problem
    bad_x, bad_y = x.at[1, 2, 0].set(jnp.nan), y.at[0].set(9)
    with pytest.raises(ValueError, match="NaN or Inf"):
        eqx.filter_jit(lambda m: he.value_and_grad(m, bad_x, y))(model)
    with pytest.raises(ValueError, match="labels in"):
        eqx.filter_jit(lambda m: he.value_and_grad(m, x, bad_y))(model)
    with pytest.raises(ValueError, match="NaN or Inf"):
        eqx.filter_jit(lambda m: he.predict(m, bad_x))(model)


def test_predict_and_train_step_under_jit_and_vmap(problem):
    model, x, y = problem
    optimizer = optax.adam(1e-3)
    state = he.init_optimizer(optimizer, model)
    eager = he.train_step(model, state, x, y, optimizer, key=jax.random.PRNGKey(2))
    jitted = eqx.filter_jit(lambda m, s: he.train_step(m, s, x, y, optimizer, key=jax.random.PRNGKey(2)))
    _same(jitted(model, state), eager)
    stepped = eager[0]
    logits = he.predict(stepped, x)
    _same(eqx.filter_jit(lambda m: he.predict(m, x))(stepped), logits)
    # one sample at a time under vmap: inference mode normalises with the running statistics, so per-sample
    # calls give the batch's answers
    per_sample = jax.vmap(lambda xi: he.predict(stepped, xi[None])[0])(x)
    _same(per_sample, logits)


def test_per_sample_gradients_under_vmap(problem):
    model, x, y = problem
    per_sample = jax.vmap(lambda xi, yi: he.value_and_grad(model, xi[None], yi[None])[0])(x, y)
    one_by_one = jnp.stack([he.value_and_grad(model, x[i:i + 1], y[i:i + 1])[0] for i in range(len(y))])
    _same(per_sample, one_by_one)


@pytest.mark.parametrize("gradient", [he.RHEL(eps=1e-3), he.BPTT()])
def test_hru_layer_layouts_agree(gradient):
    layer = he.LinearHRU(5, 3, key=jax.random.PRNGKey(3), dtype=jnp.float64)
    u = jax.random.normal(jax.random.PRNGKey(4), (2, 9, 5))  # (N, L, H)
    time_major = layer(jnp.swapaxes(u, 0, 1), gradient=gradient)
    _same(layer(u, gradient=gradient, batch_first=True), jnp.swapaxes(time_major, 0, 1))
    _same(jax.vmap(lambda s: layer(s, gradient=gradient))(u), jnp.swapaxes(time_major, 0, 1))
    _same(layer(u[0], gradient=gradient), time_major[:, 0])
    assert float(he.retrace_error(layer, u, batch_first=True)) < 1e-12
    with pytest.raises(ValueError, match=r"\(L, N, H\), \(N, L, H\) with batch_first=True, or one sequence"):
        layer(u[0, 0], gradient=gradient)


def test_block_takes_batch_first_and_single_sequences():
    model = he.HSSM(in_dim=2, out_dim=3, hidden=4, state=2, blocks=1, key=jax.random.PRNGKey(5))
    block = model.blocks[0]
    h = jax.random.normal(jax.random.PRNGKey(6), (3, 7, 4))  # (N, L, H)
    time_major, stats = block(jnp.swapaxes(h, 0, 1), train=True)
    batch_first, stats_bf = block(h, train=True, batch_first=True)
    _same((batch_first, stats_bf), (jnp.swapaxes(time_major, 0, 1), stats))
    single, _ = block(h[0], train=False)
    _same(single, block(h[:1], train=False, batch_first=True)[0][0])


def _docs_example() -> str:
    """The Python block of docs/api.md that follows the marker comment."""
    text = (ROOT / "docs" / "api.md").read_text()
    match = re.search(r"<!-- example: own-equinox-model -->\s*```python\n(.*?)```", text, re.S)
    assert match, "docs/api.md lost its own-Equinox-model example"
    return match.group(1)


def test_own_equinox_model_example_from_the_docs_runs():
    namespace = {}
    exec(compile(_docs_example(), "docs/api.md", "exec"), namespace)
    rhel, bptt = namespace["rhel_grads"], namespace["bptt_grads"]
    leaves = jax.tree_util.tree_leaves(eqx.filter(bptt, eqx.is_inexact_array))
    assert leaves and all(float(jnp.max(jnp.abs(leaf))) > 0 for leaf in leaves)
    for row in compare_gradients(rhel, bptt):
        assert row["rel_err"] < 1e-8, row


def test_the_nan_count_is_exact_across_its_slices():
    """check_inputs counts NaN/Inf slice by slice (no temporary of x's size): every one is counted, at slice
    boundaries and in the last, shorter slice too."""
    from hamecho.nn.api import _FINITE_CHUNK, _count_not_finite

    n = 2 * _FINITE_CHUNK + 5
    flat = np.zeros(n, np.float32)
    where = [0, _FINITE_CHUNK - 1, _FINITE_CHUNK, 2 * _FINITE_CHUNK, n - 1]
    flat[where] = [np.nan, np.inf, -np.inf, np.nan, np.nan]
    x = jnp.asarray(flat.reshape(1, n, 1))
    assert _count_not_finite(x) == len(where) == _count_not_finite(np.asarray(x))
    assert _count_not_finite(jnp.ones((2, 3, 4))) == 0


def test_the_nan_count_needs_no_temporary_of_the_inputs_size():
    """XLA's buffer analysis of the count: a whole-array ``sum(~isfinite(x))`` needed 2x a float32 x (its int64
    mask under x64), which was most of Streaming's peak growth from L = 1e5 to 1e6; slice by slice it is small."""
    from hamecho.nn.api import _FINITE_CHUNK, _not_finite

    x = jnp.zeros((4, 250_000, 6), jnp.float32)
    temp = _not_finite.lower(x).compile().memory_analysis().temp_size_in_bytes
    assert temp < 20 * _FINITE_CHUNK < x.nbytes / 15
