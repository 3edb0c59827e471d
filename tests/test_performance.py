"""What makes a training step cheaper without changing its arithmetic (docs/performance.md)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hamecho as he
from hamecho.nn.hssm import DROPOUT_RATE
from hamecho.nn.layers import dropout_keep_mask, packed_bits, unpacked_bits

pytestmark = pytest.mark.usefixtures("x64")


def test_dropout_masks_are_bernoullis_draws_and_kept_packed():
    """The packed masks are jax.random.bernoulli's booleans, and a block keeps them as bits: XLA's buffer
    analysis of a BatchNorm model's gradient grows by at most 11 (L, N, H) float32 activations per block (10.3
    measured; 14.3 when the mask's 32-bit random words stayed alive until the backward pass)."""
    key = jax.random.PRNGKey(3)
    for shape in ((7, 3, 13), (5, 64), (9,)):
        np.testing.assert_array_equal(dropout_keep_mask(key, DROPOUT_RATE, shape),
                                      jax.random.bernoulli(key, 1.0 - DROPOUT_RATE, shape))
    mask = jax.random.bernoulli(key, 0.5, (4, 11))
    assert packed_bits(mask).dtype == jnp.uint8 and packed_bits(mask).shape == (4, 2)
    np.testing.assert_array_equal(unpacked_bits(packed_bits(mask), 11), mask)

    length, batch, hidden = 2048, 4, 64
    x, y = jax.random.normal(jax.random.PRNGKey(1), (batch, length, 6), jnp.float32), jnp.arange(batch) % 5

    def temp(blocks):
        model = he.HSSM(in_dim=6, out_dim=5, hidden=hidden, state=16, blocks=blocks, hru="nonlinear",
                        dtype=jnp.float32, key=jax.random.PRNGKey(0))
        grad = jax.jit(lambda m, x, y, k: he.value_and_grad(m, x, y, key=k))
        return grad.lower(model, x, y, jax.random.PRNGKey(2)).compile().memory_analysis().temp_size_in_bytes

    per_block = temp(3) - temp(2)
    assert per_block <= 11 * length * batch * hidden * 4, per_block / (length * batch * hidden * 4)
