"""The cases the streaming benchmarks measure (issue #14): one model, one batch, one training step per method.

Model as ``hamecho bench``: a 6-block HSSM (hidden 64, state 16), float32 parameters and activations,
float64 cores (JAX's x64 mode, the CLI default), batch 4, 6 input channels, 5 classes, Adam. Every
method trains the same model, with ``norm="layer"`` (streaming needs it; the others get it so that the
comparison is of the memory strategy alone), dropout on (per-step masks), one jitted ``train_step``.

    rhel            RHEL, every activation kept for autodiff (``memory=None``)
    bptt            BPTT, likewise
    bptt_chunked    BPTT with ``TimeChunks(1024)``: each block keeps its input and each chunk's start state
    rhel_chunked    RHEL with ``TimeChunks(1024)``
    rhel_streaming  RHEL with ``Streaming(chunk)``: nothing of length L kept but the input
"""
from __future__ import annotations

import numpy as np

SHAPE = {"blocks": 6, "hidden": 64, "state": 16, "in_dim": 6, "classes": 5, "batch": 4}
METHODS = ("rhel", "bptt", "bptt_chunked", "rhel_chunked", "rhel_streaming")
TIME_CHUNK = 1024
STREAM_CHUNK = 512


def choices(method: str, chunk: int = STREAM_CHUNK) -> dict:
    import hamecho as he

    gradient = he.BPTT() if method.startswith("bptt") else he.RHEL()
    memory = {"chunked": lambda: he.TimeChunks(TIME_CHUNK), "streaming": lambda: he.Streaming(chunk)}
    return dict(gradient=gradient, memory=memory[method.partition("_")[2]]() if "_" in method else None)


def input_bytes(length: int) -> int:
    """The raw input x (batch, L, in_dim) float32."""
    return SHAPE["batch"] * length * SHAPE["in_dim"] * 4


def build(length: int, hru: str = "linear", norm: str = "layer", seed: int = 0):
    """(model, x, y) with x written once in float32 (NumPy, then one copy to the device)."""
    import jax
    import jax.numpy as jnp

    import hamecho as he

    model = he.HSSM(in_dim=SHAPE["in_dim"], out_dim=SHAPE["classes"], hidden=SHAPE["hidden"], state=SHAPE["state"],
                    blocks=SHAPE["blocks"], hru=hru, norm=norm, dtype=jnp.float32, key=jax.random.PRNGKey(seed))
    rng = np.random.default_rng(seed)
    x_host = rng.standard_normal((SHAPE["batch"], length, SHAPE["in_dim"]), dtype=np.float32)
    x = jnp.asarray(x_host)
    del x_host
    y = jnp.asarray(rng.integers(0, SHAPE["classes"], SHAPE["batch"]))
    return model, x, y


def training_step(method: str, chunk: int = STREAM_CHUNK):
    """(step(model, opt_state, x, y, key) -> (model, opt_state, loss), init(model) -> opt_state)."""
    import optax

    import hamecho as he

    optimizer = optax.adam(1e-3)
    kwargs = choices(method, chunk)

    def step(model, opt_state, x, y, key):
        return he.train_step(model, opt_state, x, y, optimizer, key=key, **kwargs)

    return step, lambda model: he.init_optimizer(optimizer, model)
