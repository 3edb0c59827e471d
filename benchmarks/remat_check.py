"""Does jax.checkpoint lower the memory of a training step on this JAX/XLA build? (issue #7 notes)

Prints XLA's compiled temporary-buffer size for (1) a plain 6-layer MLP on a long batch and (2) the
6-block linear HSSM at L = 17,984 (RHEL), each without and with ``jax.checkpoint`` around every
layer/block. Measured with jax 0.10.2 on CPU: identical sizes with and without, i.e. the
rematerialisation does not reduce the peak here.

    python benchmarks/remat_check.py
"""
import jax
import jax.numpy as jnp

jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402

import hamecho.nn.hssm as models  # noqa: E402
from hamecho.core.choices import Choices  # noqa: E402
from hamecho.nn.api import training_loss  # noqa: E402


def temp_mib(fn, *args) -> float:
    return jax.jit(fn).lower(*args).compile().memory_analysis().temp_size_in_bytes / 2**20


def mlp_layer(weight, h):
    for _ in range(4):
        h = jnp.tanh(h @ weight) * jax.nn.sigmoid(h @ weight.T)
    return h


def mlp_loss(weights, x, checkpoint):
    h = x
    for weight in weights:
        h = (jax.checkpoint(mlp_layer) if checkpoint else mlp_layer)(weight, h) + h
    return jnp.sum(h**2)


def hssm_temp(checkpoint: bool, length: int = 17_984) -> float:
    model = models.HSSM(in_dim=6, out_dim=5, hidden=64, state=16, blocks=6, hru="linear", dtype=jnp.float32,
                        key=jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (4, length, 6), jnp.float32)
    y = jnp.arange(4) % 5
    params, static = eqx.partition(model, eqx.is_inexact_array)
    options = Choices()
    plain_block = models.Block.apply

    def block_call(block, h, options, *, train, key=None):
        run = lambda b, h: plain_block(b, h, options, train=train, key=key)
        return (jax.checkpoint(run) if checkpoint else run)(block, h)

    models.Block.apply = block_call
    try:
        return temp_mib(jax.grad(lambda p: training_loss(eqx.combine(p, static), x, y, options)[0]), params)
    finally:
        models.Block.apply = plain_block


if __name__ == "__main__":
    weights = [jnp.full((64, 64), 0.01) for _ in range(6)]
    x = jnp.ones((100_000, 64))
    for checkpoint in (False, True):
        mlp_grad = jax.grad(lambda w, checkpoint=checkpoint: mlp_loss(w, x, checkpoint))
        print(f"MLP  checkpoint={checkpoint!s:5}  temp {temp_mib(mlp_grad, weights):8.1f} MiB")
    for checkpoint in (False, True):
        print(f"HSSM checkpoint={checkpoint!s:5}  temp {hssm_temp(checkpoint):8.1f} MiB")
