"""The HSSM's options for long sequences (docs/longrange.md): a zero head, oscillator periods spread over a range."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hamecho as he
from hamecho.data.generated import generated
from hamecho.nn.layers import LinearHRU, stiffness_for_periods


def tiny(**options):
    return he.HSSM(in_dim=2, out_dim=3, hidden=8, state=4, blocks=2, norm="layer", key=jax.random.PRNGKey(0),
                   **options)


def angles(hru) -> np.ndarray:
    """Each oscillator's turn per step θ, from cos θ = 1 − δ²A/2 (A far from its stability clip here)."""
    theta = hru.theta
    step = np.asarray(jax.nn.sigmoid(theta["steps"]), np.float64)
    stiffness = np.asarray(theta["a"], np.float64)
    return 2 * np.arcsin(step * np.sqrt(stiffness) / 2)


def cross_entropy(logits, y):
    return float(-jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(len(y)), y]))


def test_zero_head_starts_at_log_classes_at_a_hundred_thousand_steps():
    source = generated("first5", length=100_000, sizes=(2, 0, 0), classes=3)
    x, y = map(jnp.asarray, source.batch("train", [0, 1]))
    assert cross_entropy(he.predict(tiny(zero_head=True), x), y) == pytest.approx(math.log(3), rel=1e-6)
    assert cross_entropy(he.predict(tiny(), x), y) > 1.5 * math.log(3)   # why: the paper's head starts far off


def test_zero_head_changes_nothing_else_and_regression_starts_at_the_targets_mean_square():
    plain, zero = tiny(), tiny(zero_head=True)
    leaves = lambda m: jax.tree_util.tree_leaves((m.encoder, m.blocks))   # noqa: E731
    for a, b in zip(leaves(plain), leaves(zero)):
        np.testing.assert_array_equal(a, b)
    assert not np.any(np.asarray(zero.head.weight)) and not np.any(np.asarray(zero.head.bias))
    model = he.HSSM(in_dim=6, out_dim=1, hidden=8, state=4, blocks=1, norm="layer", task="regression",
                    output_step=128, zero_head=True, key=jax.random.PRNGKey(1))
    x, y = map(jnp.asarray, generated("ppg", length=1024, sizes=(2, 0, 0)).batch("train", [0, 1]))
    np.testing.assert_array_equal(he.predict(model, x), jnp.zeros_like(y))   # so the loss is mean(y²)
    with pytest.raises(ValueError, match="zero_head must be True or False"):
        tiny(zero_head="yes")


def test_periods_spread_log_uniformly_over_the_range():
    hru = LinearHRU(8, 32, key=jax.random.PRNGKey(3), periods=(2.5, 1e6))
    periods = np.sort(2 * np.pi / angles(hru))
    assert periods[0] >= 2.5 * (1 - 1e-4) and periods[-1] <= 1e6 * (1 + 1e-3)
    # stratified: one oscillator in each of the 32 equal slices of log-period
    slots = np.floor(32 * np.log(periods / 2.5) / np.log(1e6 / 2.5)).astype(int)
    np.testing.assert_array_equal(np.sort(slots), np.arange(32))
    # a period of a million steps is a ≈ 1e-11: kept exactly (4 sin²(θ/2)/δ², no 1 − cos θ cancellation)
    assert float(jnp.min(hru.theta["a"])) > 0
    with pytest.raises(ValueError, match="periods must be"):
        LinearHRU(8, 4, key=jax.random.PRNGKey(0), periods=(1.0, 10.0))
    with pytest.raises(ValueError, match="periods initialises the linear HRU"):
        he.HSSM(in_dim=2, out_dim=3, hru="nonlinear", periods=(3, 30), key=jax.random.PRNGKey(0))


def test_periods_init_gives_the_angle_it_asks_for_in_the_leapfrog():
    """The stiffness from ``stiffness_for_periods`` makes the core's free oscillation turn by 2π/period per step."""
    step = jnp.asarray([0.6, 0.7], jnp.float64) if jax.config.jax_enable_x64 else jnp.asarray([0.6, 0.7])
    a = stiffness_for_periods(jax.random.PRNGKey(0), (10.0, 12.0), step)
    theta = 2 * np.arcsin(np.asarray(step) * np.sqrt(np.asarray(a)) / 2)
    assert np.all((theta >= 2 * np.pi / 12 * (1 - 1e-5)) & (theta <= 2 * np.pi / 10 * (1 + 1e-5)))
    # run the leapfrog map itself: φ' = (1 − δ²A/2)φ + (δ − δ³A/4)π, π' = −δAφ + (1 − δ²A/2)π; its trace is 2 cos θ
    d, A = np.asarray(step), np.asarray(a)
    np.testing.assert_allclose(2 * (1 - d**2 * A / 2), 2 * np.cos(theta), rtol=1e-5)


@pytest.mark.usefixtures("x64")
def test_rhel_equals_bptt_with_slow_oscillators():
    """float64: oscillators with periods up to 10⁵ steps (a down to ~1e-9); RHEL's gradient is BPTT's."""
    model = he.HSSM(in_dim=2, out_dim=3, hidden=8, state=4, blocks=1, norm="layer", periods=(2.5, 1e5),
                    dtype=jnp.float64, key=jax.random.PRNGKey(5))
    x, y = map(jnp.asarray, generated("first5", length=200, sizes=(3, 0, 0), classes=3).batch("train", [0, 1, 2]))
    x = x.astype(jnp.float64)
    _, g_rhel = he.value_and_grad(model, x, y, gradient=he.RHEL())
    _, g_bptt = he.value_and_grad(model, x, y, gradient=he.BPTT())
    assert float(jnp.max(jnp.abs(g_bptt.blocks[0].hru.theta["a"]))) > 0
    for a, b in zip(jax.tree_util.tree_leaves(g_rhel), jax.tree_util.tree_leaves(g_bptt)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-7, atol=1e-10 * float(jnp.max(jnp.abs(b))))


def test_parameter_groups_give_the_cores_their_own_learning_rate():
    import equinox as eqx
    import optax

    from hamecho.nn.hssm import parameter_groups

    model = tiny()
    labels = parameter_groups(model)
    leaves = jax.tree_util.tree_leaves(labels)
    core_leaves = [leaf for b in labels.blocks for leaf in jax.tree_util.tree_leaves(b.hru.theta)]
    assert core_leaves == ["core"] * 4 and leaves.count("core") == 4 and leaves.count("rest") == len(leaves) - 4
    optimizer = optax.multi_transform({"core": optax.sgd(0.0), "rest": optax.adam(1e-2)}, lambda params: labels)
    x, y = map(jnp.asarray, generated("first5", length=60, sizes=(3, 0, 0), classes=3).batch("train", [0, 1, 2]))
    new, _, _ = he.train_step(model, he.init_optimizer(optimizer, model), x, y, optimizer)
    for old_block, new_block in zip(model.blocks, new.blocks):
        for a, b in zip(jax.tree_util.tree_leaves(old_block.hru.theta), jax.tree_util.tree_leaves(new_block.hru.theta)):
            np.testing.assert_array_equal(a, b)
        assert not np.array_equal(old_block.hru.B, new_block.hru.B)
    assert jax.tree_util.tree_structure(labels) == jax.tree_util.tree_structure(eqx.filter(model, he.trainable(model)))
