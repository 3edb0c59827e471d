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
    """(model, x, y); x (batch, L, in_dim) float32 standard normal, written on the device chunk by chunk into
    its one buffer (``make_input``), so that creating it adds nothing but x itself to the process's memory."""
    import jax
    import jax.numpy as jnp

    import hamecho as he

    model = he.HSSM(in_dim=SHAPE["in_dim"], out_dim=SHAPE["classes"], hidden=SHAPE["hidden"], state=SHAPE["state"],
                    blocks=SHAPE["blocks"], hru=hru, norm=norm, dtype=jnp.float32, key=jax.random.PRNGKey(seed))
    x = make_input(jax.random.PRNGKey(seed + 1), length)
    y = jax.random.randint(jax.random.PRNGKey(seed + 2), (SHAPE["batch"],), 0, SHAPE["classes"])
    return model, x, y


def make_input(key, length: int, chunk: int = 10_000):
    """x (batch, length, in_dim) float32 ~ N(0, 1), generated in place chunk by chunk (a NumPy array copied
    to the device measured 1.8× x of resident memory on the way, and a one-shot ``jax.random.normal`` 2×)."""
    from functools import partial

    import jax
    import jax.numpy as jnp

    @partial(jax.jit, static_argnums=(1, 2))
    def make(key, length, chunk):
        shape = (SHAPE["batch"], length, SHAPE["in_dim"])
        n_full, rest = divmod(length, chunk)

        def body(i, x):
            part = jax.random.normal(jax.random.fold_in(key, i), (shape[0], chunk, shape[2]), jnp.float32)
            return jax.lax.dynamic_update_slice_in_dim(x, part, i * chunk, axis=1)

        x = jax.lax.fori_loop(0, n_full, body, jnp.zeros(shape, jnp.float32))
        if rest:
            part = jax.random.normal(jax.random.fold_in(key, n_full), (shape[0], rest, shape[2]), jnp.float32)
            x = jax.lax.dynamic_update_slice_in_dim(x, part, n_full * chunk, axis=1)
        return x

    return make(key, length, min(chunk, length))


def training_step(method: str, chunk: int = STREAM_CHUNK):
    """(step(model, opt_state, x, y, key) -> (model, opt_state, loss), init(model) -> opt_state)."""
    import optax

    import hamecho as he

    optimizer = optax.adam(1e-3)
    kwargs = choices(method, chunk)

    def step(model, opt_state, x, y, key):
        return he.train_step(model, opt_state, x, y, optimizer, key=key, **kwargs)

    return step, lambda model: he.init_optimizer(optimizer, model)
