"""Streaming (issue #14): the whole stack trained by RHEL with memory flat in L, against autodiff.

Exactness targets (float64): for the linear HRU streaming RHEL equals BPTT of the same model within
1e-9 for every array (classification and regression, with dropout, chunks that do and do not divide L);
for the nonlinear HRU within RHEL's own O(ε²) of BPTT and within 1e-9 of non-streaming RHEL; with the
fixed-point integrator the rebuild returns every block to its zero initial state bit for bit. Then the
rules (BPTT, norm "batch", a parallel scan are refused with the reason), the norm "layer" model's
training API, and the memory contract (XLA's temporaries do not grow with L).
"""
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import hamecho as he
from hamecho.core.choices import Choices
from hamecho.nn.keywords import choices_from_keywords
from hamecho.nn.memory import chunk_plan
from hamecho.nn.streaming import stream_retrace_error
from hamecho.tools.gradcheck import compare_gradients

pytestmark = pytest.mark.usefixtures("x64")

LENGTH, BATCH, IN_DIM, CLASSES, HIDDEN, STATE = 48, 3, 3, 3, 8, 4


def problem(hru="linear", task="classification", *, length=LENGTH, step=0.1, blocks=3, seed=0, scale=1.0,
            dtype=jnp.float64):
    model = he.HSSM(in_dim=IN_DIM, out_dim=CLASSES, hidden=HIDDEN, state=STATE, blocks=blocks, hru=hru, task=task,
                    output_step=5, step=step, dtype=dtype, norm="layer", key=jax.random.PRNGKey(seed))
    x = scale * jax.random.normal(jax.random.PRNGKey(seed + 1), (BATCH, length, IN_DIM), dtype)
    if task == "classification":
        y = jnp.array([0, 2, 1])
    else:
        y = jax.random.uniform(jax.random.PRNGKey(seed + 2), (BATCH, length // 5, CLASSES), dtype, -1, 1)
    return model, x, y


def worst(grads, reference) -> float:
    rows = compare_gradients(grads, reference)
    assert len(rows) == len(jax.tree_util.tree_leaves(eqx.filter(reference, eqx.is_inexact_array)))
    return max(row["rel_err"] for row in rows)


def test_chunk_plan_has_no_padding():
    assert chunk_plan(48, 12) == (4, 12, 0)
    assert chunk_plan(48, 10) == (6, 8, 0)  # a divisor between chunk/2 and chunk
    assert chunk_plan(47, 10) == (4, 10, 7)  # none: a first chunk of 7 steps, then four of 10
    assert chunk_plan(48, 100) == (1, 48, 0)
    for length, chunk in ((1, 5), (7, 7), (1000, 256), (17984, 256), (10**6, 512)):
        n_full, size, rest = chunk_plan(length, chunk)
        assert n_full * size + rest == length and rest < size <= chunk


# 4 × 12 steps; 7 steps, then 4 × 10. Two of the four combinations in CI (compilation dominates).
@pytest.mark.parametrize("task,length,chunk", [
    ("classification", 48, 12), ("regression", 47, 10),
    pytest.param("classification", 47, 10, marks=pytest.mark.slow),
    pytest.param("regression", 48, 12, marks=pytest.mark.slow)])
def test_linear_streaming_rhel_equals_bptt_with_dropout(task, length, chunk):
    model, x, y = problem("linear", task, length=length)
    key = jax.random.PRNGKey(7)
    keep = model.blocks[0].dropout_masks(key, (length, BATCH, HIDDEN))[0]
    assert 0 < int(jnp.sum(~keep)) < 0.2 * keep.size  # dropout is on
    loss_b, bptt = he.value_and_grad(model, x, y, gradient=he.BPTT(), key=key)
    loss_s, streamed = he.value_and_grad(model, x, y, gradient=he.RHEL(eps=0.1), memory=he.Streaming(chunk), key=key)
    assert abs(float(loss_s - loss_b)) <= 1e-13 * abs(float(loss_b))
    assert worst(streamed, bptt) < 1e-9


def test_nonlinear_streaming_rhel_is_bptt_within_rhel_bias_and_is_rhel():
    model, x, y = problem("nonlinear", step=0.1, blocks=2)
    key = jax.random.PRNGKey(7)
    _, bptt = he.value_and_grad(model, x, y, gradient=he.BPTT(), key=key)
    _, streamed = he.value_and_grad(model, x, y, gradient=he.RHEL(eps=1e-3), memory=he.Streaming(10), key=key)
    assert worst(streamed, bptt) < 1e-6  # RHEL's own O(ε²)
    # Against non-streaming RHEL with the default difference rule, at ε = 1e-3 and at the default ε = 0.1.
    # "auto" is "quadrature" (issue #21 item 7), which has no cancellation, so the two agree to rounding. The
    # "direct" subtraction, auto's choice here before, divided the rebuild's ~1e-15 rounding by ε (measured
    # 3e-10 to 2.1e-9 here).
    for gradient in (he.RHEL(eps=1e-3), he.RHEL()):
        _, plain = he.value_and_grad(model, x, y, gradient=gradient, key=key)
        _, streamed = he.value_and_grad(model, x, y, gradient=gradient, memory=he.Streaming(10), key=key)
        assert worst(streamed, plain) < 1e-9, gradient


def test_gradient_with_respect_to_the_input_streams_too():
    model, x, y = problem("linear", "regression", blocks=1)
    loss = lambda x, memory: he.nn.api.training_loss(model, x, y, gradient=he.RHEL(), memory=memory)[0]
    grad = jax.jit(jax.grad(loss), static_argnums=1)
    reference = grad(x, None)
    streamed = grad(x, he.Streaming(12))
    np.testing.assert_allclose(streamed, reference, rtol=0, atol=1e-12 * float(jnp.max(jnp.abs(reference))))


def test_fixed_point_streaming_rebuilds_exactly_and_runs():
    # large steps and inputs: the float rebuild misses measurably, the grid's is exact
    model, x, y = problem("nonlinear", length=60, step=0.5, scale=3.0, blocks=2)
    fixed = he.FixedPointLeapfrog(fraction_bits=40)
    assert np.all(np.asarray(stream_retrace_error(model, x, chunk=7, integrator=fixed)) == 0.0)
    assert float(jnp.max(stream_retrace_error(model, x, chunk=7))) > 0.0
    key = jax.random.PRNGKey(7)
    loss_p, plain = he.value_and_grad(model, x, y, gradient=he.RHEL(eps=1e-3), integrator=fixed, key=key)
    loss_s, streamed = he.value_and_grad(model, x, y, gradient=he.RHEL(eps=1e-3), integrator=fixed,
                                         memory=he.Streaming(7), key=key)
    assert float(loss_s) == pytest.approx(float(loss_p), rel=1e-14)
    # the same integer echo; only a nudge rounded to the other side of a grid point can differ
    assert worst(streamed, plain) < 1e-7


def test_time_chunks_draw_the_whole_sequences_dropout_with_norm_layer():
    model, x, y = problem("linear", blocks=2)
    key = jax.random.PRNGKey(7)
    loss_p, plain = he.value_and_grad(model, x, y, gradient=he.BPTT(), key=key)
    loss_c, chunked = he.value_and_grad(model, x, y, gradient=he.BPTT(), memory=he.TimeChunks(7), key=key)
    assert abs(float(loss_c - loss_p)) <= 1e-13 * abs(float(loss_p))
    assert worst(chunked, plain) < 1e-11


# --- the rules ------------------------------------------------------------------------------------------

def test_streaming_is_refused_with_its_reason():
    model, x, y = problem("linear")
    with pytest.raises(ValueError, match="works with RHEL only.*TimeChunks"):
        he.value_and_grad(model, x, y, gradient=he.BPTT(), memory=he.Streaming(8))
    with pytest.raises(ValueError, match="works with RHEL only"):
        Choices(gradient=he.BPTT(checkpoint_every=4), memory=he.Streaming(8))
    batch_model = he.HSSM(in_dim=IN_DIM, out_dim=CLASSES, hidden=HIDDEN, state=STATE, blocks=1,
                          dtype=jnp.float64, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=r"needs HSSM\(norm='layer'\).*mean over time"):
        he.value_and_grad(batch_model, x, y, memory=he.Streaming(8))
    with pytest.raises(ValueError, match="sequential scan"):
        he.value_and_grad(model, x, y, integrator=he.AffineLeapfrog(), memory=he.Streaming(8))
    with pytest.raises(ValueError, match="chunk must be a positive integer"):
        he.Streaming(0)
    with pytest.raises(ValueError, match="whole HSSM stack"):
        model.blocks[0](jnp.zeros((LENGTH, BATCH, HIDDEN)), memory=he.Streaming(8))
    with pytest.raises(ValueError, match="norm must be one of"):
        he.HSSM(in_dim=1, out_dim=2, norm="group", key=jax.random.PRNGKey(0))
    # the keyword spelling (what a TOML [train] key translates through)
    assert choices_from_keywords(stream_chunk=12) == Choices(memory=he.Streaming(12))
    with pytest.raises(ValueError, match="block_chunk and stream_chunk .* choose one"):
        choices_from_keywords(block_chunk=8, stream_chunk=12)
    with pytest.raises(ValueError, match="works with RHEL only"):
        choices_from_keywords(algo="bptt", stream_chunk=12)


# --- the norm "layer" model -----------------------------------------------------------------------------

def test_layer_norm_model_trains_and_predicts():
    model, x, y = problem("linear", blocks=1)
    assert he.count_parameters(model) == sum(a.size for a in jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_array)))
    assert model.with_norm_stats(((),)) is model  # no running statistics to keep
    optimizer = optax.adam(1e-2)
    losses = {}
    for name, memory in (("plain", None), ("streaming", he.Streaming(12))):
        m, state = model, he.init_optimizer(optimizer, model)
        for step in range(3):
            m, state, loss = he.train_step(m, state, x, y, optimizer, memory=memory, key=jax.random.PRNGKey(step))
        losses[name] = float(loss)
    assert losses["streaming"] == pytest.approx(losses["plain"], rel=1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no running statistics, so nothing to warn about
        logits = he.predict(m, x)
    assert logits.shape == (BATCH, CLASSES)
    inference = eqx.filter_jit(lambda m, x: m(x, memory=he.Streaming(12))[0])(m, x)
    np.testing.assert_allclose(inference, logits, rtol=1e-12, atol=1e-14)


# --- the memory contract --------------------------------------------------------------------------------

def _temp_bytes(model, x, y, memory) -> int:
    loss = lambda m, x, y: he.nn.api.training_loss(m, x, y, memory=memory, key=jax.random.PRNGKey(0))[0]
    fn = eqx.filter_jit(eqx.filter_value_and_grad(loss))
    return fn.lower(model, x, y).compile().compiled.memory_analysis().temp_size_in_bytes


@pytest.mark.parametrize("task", ["classification", pytest.param("regression", marks=pytest.mark.slow)])
def test_streaming_temporaries_do_not_grow_with_length(task):
    """XLA's count of one value-and-grad's temporary buffers (x and y are arguments, not temporaries)."""
    sizes = {}
    memories = {"streaming": he.Streaming(20)} if task == "regression" else {"plain": None,
                                                                              "streaming": he.Streaming(20)}
    for length in (200, 2000):
        model, x, y = problem("linear", task, length=length, blocks=1, dtype=jnp.float32)
        sizes[length] = {name: _temp_bytes(model, x, y, memory) for name, memory in memories.items()}
    activation = 1800 * BATCH * HIDDEN * 4  # one (L, N, H) float32 array's growth
    if "plain" in memories:
        assert sizes[2000]["plain"] - sizes[200]["plain"] > 3 * activation  # the check can fail
    # streaming: nothing of size L (regression's outputs have the targets' size, L/5 · 3 numbers)
    assert sizes[2000]["streaming"] - sizes[200]["streaming"] < 0.25 * activation, sizes
