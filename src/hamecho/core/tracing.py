"""Trace once, replay: a function whose JAX trace is recorded once per signature and replayed after that.

    echo_steps = trace_once(echo_steps, static_argnums=(0, 1, 2))

A 6-block HSSM runs six cores of the same shapes: Python builds the same scan bodies six times for the
forward pass and six times for the echo, a large part of the time from a call of ``train_step`` to its
compiled program. :func:`trace_once` records the computation a function performs the first time it
sees a signature (its static arguments, the tree structure, shapes and dtypes of its array arguments,
JAX's x64 mode) as a jaxpr, and on every later call with that signature binds the recorded primitives
again, in the same order, with the same parameters, instead of running the Python code. What a trace
sees is therefore the same sequence of operations either way: the compiled program and its results are
the same, bit for bit (the golden tests check); only the Python work is saved.

Rules for a function so wrapped: its static arguments (the Python values that shape the computation)
are hashable, and it closes over no traced values: everything it computes from comes in through its
arguments. A call is replayed only when every array argument is traced (under ``jit``, ``grad``,
``vmap``: where tracing costs); a call with a concrete array runs the Python code, which may fold
computations on concrete values into constants as JAX always does.
"""
from __future__ import annotations

import contextlib
import functools
from collections import OrderedDict

import jax
from jax.extend import core as jax_core

_replay = [True]
MAX_RECORDINGS = 256  # per function, least recently used dropped first (a test suite sees many shapes)


@contextlib.contextmanager
def replaying(on: bool):
    """Within the block, functions under :func:`trace_once` replay their recordings (``on``, the default)
    or run their Python code every time (for comparing the two, as the tests do)."""
    before = _replay[0]
    _replay[0] = bool(on)
    try:
        yield
    finally:
        _replay[0] = before


def trace_once(fn, *, static_argnums: tuple[int, ...] = (), context=None):
    """``fn`` traced once per signature and replayed afterwards (module docstring). Keeps the jaxprs of the
    ``MAX_RECORDINGS`` signatures used last. ``context``: a function of no arguments whose (hashable) value joins
    the signature, for a setting ``fn`` reads from outside its arguments (the cores' ``per_sample_sums``)."""
    static_argnums = tuple(static_argnums)
    recorded: OrderedDict = OrderedDict()

    @functools.wraps(fn)
    def replay(*args):
        if not _replay[0]:
            return fn(*args)
        static = tuple(args[i] for i in static_argnums)
        dynamic = [a for i, a in enumerate(args) if i not in static_argnums]
        leaves, tree = jax.tree_util.tree_flatten(dynamic)
        if not all(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
            # a concrete value would be folded into constants by the Python code and traced by the recording:
            # only calls whose arrays are all traced are replayed (inside jit, grad, vmap: the costly traces)
            return fn(*args)
        avals = tuple(jax.typeof(leaf) for leaf in leaves)
        key = (static, tree, avals, jax.config.jax_enable_x64, jax.config.jax_default_matmul_precision,
               None if context is None else context())
        if key in recorded:
            recorded.move_to_end(key)
        else:
            def flat(*flat_leaves):
                rebuilt = iter(jax.tree_util.tree_unflatten(tree, flat_leaves))
                full = [args[i] if i in static_argnums else next(rebuilt) for i in range(len(args))]
                return fn(*full)

            closed, out_shape = jax.make_jaxpr(flat, return_shape=True)(*leaves)
            recorded[key] = closed, jax.tree_util.tree_structure(out_shape)
            if len(recorded) > MAX_RECORDINGS:
                recorded.popitem(last=False)
        closed, out_tree = recorded[key]
        outputs = jax_core.jaxpr_as_fun(closed)(*leaves)
        return jax.tree_util.tree_unflatten(out_tree, outputs)

    return replay
