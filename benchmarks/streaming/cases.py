"""The cases the streaming benchmarks measure (issue #14): one model, one batch, one training step per method.

The definitions live in the library, ``hamecho.tools.stepmemory`` (``hamecho run``'s memory part uses them
too): a 6-block HSSM (hidden 64, state 16), float32 parameters and activations, float64 cores (JAX's x64
mode, the CLI default), batch 4, 6 input channels, 5 classes, Adam. Every method trains the same model,
with ``norm="layer"`` (streaming needs it; the others get it so that the comparison is of the memory
strategy alone), dropout on (per-step masks), one jitted ``train_step``.

    rhel            RHEL, every activation kept for autodiff (``memory=None``)
    bptt            BPTT, likewise
    bptt_chunked    BPTT with ``TimeChunks(1024)``: each block keeps its input and each chunk's start state
    rhel_chunked    RHEL with ``TimeChunks(1024)``
    rhel_streaming  RHEL with ``Streaming(chunk)``: nothing of length L kept but the input
"""
from __future__ import annotations

from hamecho.tools.stepmemory import ALL_METHODS as METHODS  # noqa: F401  (the scripts read these names here)
from hamecho.tools.stepmemory import SHAPE, STREAM_CHUNK, TIME_CHUNK, choices, input_bytes  # noqa: F401
from hamecho.tools.stepmemory import build as _build
from hamecho.tools.stepmemory import make_input as _make_input


def build(length: int, hru: str = "linear", norm: str = "layer", seed: int = 0):
    """(model, x, y); x (batch, L, in_dim) float32 standard normal, written on the device chunk by chunk into
    its one buffer (``make_input``), so that creating it adds nothing but x itself to the process's memory."""
    return _build(length, hru=hru, norm=norm, seed=seed)


def make_input(key, length: int, chunk: int = 10_000):
    return _make_input(key, (SHAPE["batch"], length, SHAPE["in_dim"]), chunk)


def training_step(method: str, chunk: int = STREAM_CHUNK):
    """(step(model, opt_state, x, y, key) -> (model, opt_state, loss), init(model) -> opt_state)."""
    import optax

    import hamecho as he

    optimizer = optax.adam(1e-3)
    kwargs = choices(method, chunk)

    def step(model, opt_state, x, y, key):
        return he.train_step(model, opt_state, x, y, optimizer, key=key, **kwargs)

    return step, lambda model: he.init_optimizer(optimizer, model)
