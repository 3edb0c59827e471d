"""HSSM: a stack of HRU blocks between an encoder and a task head (spec §5).

    x (N, L, in_dim) ─ encoder Dense(in→H) ─ blocks × n ─ head

    block:  skip = x → norm → HRU layer → GELU → dropout → GLU → dropout → x = skip + x
            norm: "batch" (BatchNorm over (time, batch), the paper's) or "layer" (each step over its
            features: every block local in time, so the stack can stream, ``hamecho.Streaming``)
    head:   classification: mean over time → Dense(H→classes)            → logits (N, classes)
            regression:     every output_step-th step → Dense(H→out) → tanh → (N, L // k, out)
            zero_head=True: the head's weight and bias start at 0 (initial loss log(classes) at any L)
    hru_output_norm=True: block:  … → HRU layer → normalise each step over its features → GELU → …

The Hamiltonian cores are differentiated by the call's gradient method (RHEL or BPTT); everything
else is ordinary autodiff, so JAX's backward traversal *is* RHEL's chaining through the stack (spec
§3). A time channel, when wanted, is added by the data (``hamecho.data.load(..., time_channel=True)``).
Activations are time-major ``(L, N, H)`` inside the stack.
"""
from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from ..core.choices import Choices, check_compatible
from .layers import (
    GLU,
    HRU,
    HRU_KINDS,
    NORMS,
    BatchNorm,
    Dense,
    LayerNorm,
    apply_dropout,
    dropout_keep_mask,
    step_keep_masks,
    time_major,
)

TASKS = ("classification", "regression")

# The model's arrays (jaxtyping, for readers and type checkers; nothing checks them at run time): the input, and
# the output of classification (logits) or of regression (a prediction every output_step steps).
Inputs = Float[ArrayLike, "batch length in_dim"]
Outputs = Float[Array, "batch out_dim"] | Float[Array, "batch outputs out_dim"]
DROPOUT_RATE = 0.05


def default_dtype():
    """float64 when JAX's x64 mode is on, float32 otherwise."""
    return jnp.zeros(()).dtype


class Block(eqx.Module):
    """Norm → HRU → GELU → dropout → GLU → dropout → residual, on (L, N, H).

    norm: "batch" (``BatchNorm``) or "layer" (``LayerNorm``, per step). With "layer" the block is local in
    time (``time_local``) and its dropout masks are drawn per step from ``fold_in(key, step)``, so any
    run over time chunks draws what the whole sequence draws. hru_output_norm: the HRU's output (L, N, H) is
    normalised each step over its features (no parameters) before the GELU, bounding what an undamped HRU
    adds to the residual stream at any L.
    """

    norm: BatchNorm | LayerNorm
    hru: HRU
    glu: GLU
    hru_output_norm: bool = eqx.field(static=True)

    def __init__(self, hidden: int, state: int, hru: str, *, key, dtype, hru_kwargs=None, norm: str = "batch",
                 hru_output_norm: bool = False):
        self.hru_output_norm = bool(hru_output_norm)
        hru_key, glu_key = jax.random.split(key)
        self.norm = NORMS[norm](hidden, dtype=dtype)
        self.hru = HRU_KINDS[hru](hidden, state, key=hru_key, dtype=dtype, **(hru_kwargs or {}))
        self.glu = GLU(hidden, key=glu_key, dtype=dtype)

    def __call__(self, x, *, gradient=None, integrator=None, memory=None, train: bool = False, key=None,
                 batch_first: bool = False):
        """x (L, N, H) → (x', (running mean, running var)); (N, L, H) with ``batch_first=True`` and one
        sequence (L, H) too. ``train``: batch statistics; ``key``: dropout. The choices as for ``HSSM``
        (a whole-stack memory, ``Streaming``, needs the HSSM)."""
        choices = Choices(gradient=gradient, integrator=integrator, memory=memory)
        check_compatible(choices.gradient, choices.integrator, choices.memory, block_alone=True)
        x, restore = time_major(x, batch_first, width=self.hru.B.shape[1], name="x")
        out, stats = self.apply(x, choices, train=train, key=key)
        return restore(out), stats

    def apply(self, x, choices: Choices, *, train: bool, key=None):
        """x (L, N, H) → (x', (running mean, running var)) with checked choices.

        ``choices.memory`` (``hamecho.nn.memory``) may run the block in a way that stores less; the
        outputs and gradients are the same.
        """
        if choices.memory is not None:
            return choices.memory.run_block(self, x, choices, train=train, key=key)
        return self.forward(x, choices, train=train, key=key)

    def forward(self, x, choices: Choices, *, train: bool, key=None):
        """The block's computation, every activation kept for autodiff."""
        with jax.named_scope("norm"):
            normed, stats = self.norm(x, train)
        hru_output = self.hru.apply(normed, choices)
        return self.after_hru(x, hru_output, self.dropout_masks(key, x.shape)), stats

    @property
    def time_local(self) -> bool:
        """True when every step's output depends on earlier steps only through the HRU state (norm "layer")."""
        return isinstance(self.norm, LayerNorm)

    def dropout_masks(self, key, shape, start=0):
        """The block's two dropout keep-masks for an input of ``shape`` (L, ...) (None, None without ``key``).

        Time-local blocks draw each step's mask from ``fold_in(key, step)``, steps ``start`` … ``start + L − 1``
        (``start`` may be traced); otherwise one draw for the whole ``shape``.
        """
        with jax.named_scope("dropout_masks"):
            keys = (None, None) if key is None else jax.random.split(key)
            if self.time_local:
                steps = start + jnp.arange(shape[0])
                return tuple(step_keep_masks(k, DROPOUT_RATE, steps, shape[1:]) for k in keys)
            return tuple(dropout_keep_mask(k, DROPOUT_RATE, shape) for k in keys)

    def after_hru(self, x, hru_output, keep_masks):
        """Everything after the HRU layer, local in time: (normalise per step →) GELU → dropout → GLU → dropout
        → x + ·."""
        if self.hru_output_norm:
            hru_output = LayerNorm().normalise(hru_output)
        with jax.named_scope("gelu_glu"):
            h = apply_dropout(jax.nn.gelu(hru_output), keep_masks[0], DROPOUT_RATE)
            return x + apply_dropout(self.glu(h), keep_masks[1], DROPOUT_RATE)


class HSSM(eqx.Module):
    """Hamiltonian state-space model (spec §5). See the module docstring for the layout.

    Arguments: in_dim (features per step), out_dim (classes, or targets per kept step), hidden H,
    state P (oscillators per HRU; the linear HRU uses 2P real channels), blocks, hru ("linear" |
    "nonlinear"), task ("classification" | "regression"), output_step k (regression reads every k-th
    step, so targets have L // k steps), step (nonlinear HRU's initial δ), dtype (default: float64 under
    x64, else float32), norm ("batch", the paper's BatchNorm, or "layer": each step over its features,
    needed by ``hamecho.Streaming``), key.

    Options for long sequences (docs/longrange.md), all off by default: zero_head (the head's weight and
    bias start at 0: the features an undamped stack pools grow with L, and so would the initial logits and
    loss; with a zero head the initial loss is log(classes), or the targets' mean square, at every L);
    periods ((shortest, longest) in steps: the linear HRU's oscillator periods spread log-uniformly over that
    range instead of the paper's initialisation, ``LinearHRU``); hru_output_norm (each HRU's output
    normalised per step before the GELU, ``Block``: an undamped HRU's output grows with L, and through the
    residual stream so would a regression head's input, until its tanh saturates and the gradient vanishes).
    """

    encoder: Dense
    blocks: tuple[Block, ...]
    head: Dense
    task: str = eqx.field(static=True)
    output_step: int = eqx.field(static=True)
    in_dim: int = eqx.field(static=True)
    out_dim: int = eqx.field(static=True)
    hru_kind: str = eqx.field(static=True)
    norm: str = eqx.field(static=True)

    def __init__(self, *, in_dim: int, out_dim: int, hidden: int = 64, state: int = 16, blocks: int = 6,
                 hru: str = "linear", task: str = "classification", output_step: int = 1, step: float = 1e-4,
                 dtype=None, norm: str = "batch", zero_head: bool = False,
                 periods: tuple[float, float] | None = None, hru_output_norm: bool = False, key):
        if hru not in HRU_KINDS:
            raise ValueError(f"hru must be one of {', '.join(map(repr, HRU_KINDS))}; got {hru!r}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(map(repr, NORMS))}; got {norm!r}")
        for name, flag in (("zero_head", zero_head), ("hru_output_norm", hru_output_norm)):
            if not isinstance(flag, bool):
                raise ValueError(f"{name} must be True or False; got {flag!r}")
        if periods is not None and hru != "linear":
            raise ValueError(f"periods initialises the linear HRU's oscillators; got hru={hru!r}")
        if task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(map(repr, TASKS))}; got {task!r}")
        for name, value in (("in_dim", in_dim), ("out_dim", out_dim), ("hidden", hidden), ("state", state),
                            ("blocks", blocks), ("output_step", output_step)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        if task == "classification" and out_dim < 2:
            raise ValueError(f"out_dim must be at least 2 classes for classification; got {out_dim}")
        dtype = default_dtype() if dtype is None else jnp.dtype(dtype)
        encoder_key, head_key, *block_keys = jax.random.split(key, blocks + 2)
        hru_kwargs = {"step": step} if hru == "nonlinear" else {}
        if periods is not None:
            hru_kwargs["periods"] = tuple(periods)
        self.encoder = Dense(in_dim, hidden, key=encoder_key, dtype=dtype)
        self.blocks = tuple(Block(hidden, state, hru, key=k, dtype=dtype, hru_kwargs=hru_kwargs, norm=norm,
                                  hru_output_norm=hru_output_norm) for k in block_keys)
        self.head = Dense(hidden, out_dim, key=head_key, dtype=dtype)
        if zero_head:
            self.head = eqx.tree_at(lambda d: (d.weight, d.bias), self.head,
                                    (jnp.zeros_like(self.head.weight), jnp.zeros_like(self.head.bias)))
        self.task, self.output_step = task, int(output_step)
        self.in_dim, self.out_dim, self.hru_kind, self.norm = int(in_dim), int(out_dim), hru, norm

    # --- forward ------------------------------------------------------------------------------
    def encode(self, x):
        """x (N, L, in_dim) → time-major encoder output (L, N, H)."""
        return self.encoder(jnp.swapaxes(x, 0, 1))

    def decode(self, h):
        """Last block output (L, N, H) → logits (N, classes) or predictions (N, L // k, out_dim).

        The head in pieces, which ``hamecho.Streaming`` uses too (it pools and keeps steps chunk by chunk):
        classification pools over time (the mean) and applies :meth:`head_output`; regression applies it at
        the output steps (:meth:`output_slots`: every k-th step, k − 1, 2k − 1, …).
        """
        if self.task == "classification":
            return self.head_output(jnp.mean(h, axis=0))
        kept = h[self.output_step - 1::self.output_step]
        return jnp.swapaxes(self.head_output(kept), 0, 1)

    def head_output(self, h):
        """The head on its input h (..., H): logits (..., classes) for classification (h pooled over time),
        tanh-bounded predictions (..., out_dim) for regression (h at output steps)."""
        if self.task == "classification":
            return self.head(h)
        return jnp.tanh(self.head(h))

    def output_slots(self, steps):
        """For regression: whether each step index (0-based, any shape) is an output step (every
        ``output_step``-th: k − 1, 2k − 1, …) and which output it is ((step + 1) // k − 1; not an output
        index where not kept)."""
        k = self.output_step
        return (steps + 1) % k == 0, (steps + 1) // k - 1

    def __call__(self, x: Inputs, *, gradient=None, integrator=None, memory=None, train: bool = False,
                 key: PRNGKeyArray | None = None) -> tuple[Outputs, PyTree]:
        """x (N, L, in_dim) → (outputs, norm statistics per block).

        ``train``: normalise with batch statistics (and return updated running statistics); ``key``:
        enables dropout. gradient / integrator / memory: the strategy objects (``hamecho.core.choices``;
        defaults ``RHEL()``, ``AutoLeapfrog()``, None).
        """
        return self.apply(x, Choices(gradient=gradient, integrator=integrator, memory=memory), train=train, key=key)

    def apply(self, x, choices: Choices, *, train: bool = False, key=None):
        """``__call__`` with checked choices (the model's norm checked against them here). A whole-stack memory
        strategy (``Streaming``) runs the stack."""
        check_compatible(choices.gradient, choices.integrator, choices.memory, norm=self.norm)
        if choices.memory is not None and choices.memory.whole_stack:
            return choices.memory.run_stack(self, x, choices, train=train, key=key)
        block_keys = [None] * len(self.blocks) if key is None else jax.random.split(key, len(self.blocks))
        h = self.encode(x)
        stats = []
        for block, block_key in zip(self.blocks, block_keys):
            h, block_stats = block.apply(h, choices, train=train, key=block_key)
            stats.append(block_stats)
        return self.decode(h), tuple(stats)

    def hru_inputs(self, x, *, integrator=None):
        """The normalised input (L, N, H) each block's HRU sees (training-mode norm, no dropout), the cores
        run by ``integrator`` (default ``AutoLeapfrog()``)."""
        choices = Choices(integrator=integrator)
        h = self.encode(x)
        inputs = []
        for block in self.blocks:
            inputs.append(block.norm(h, True)[0])
            h, _ = block.apply(h, choices, train=True)
        return inputs

    def with_norm_stats(self, stats):
        """A copy with every block's running statistics replaced by ``stats`` (from ``__call__``); the
        model itself with norm "layer", which keeps none (its ``stats`` are empty)."""
        if not has_running_statistics(self):
            return self
        return eqx.tree_at(_norm_statistics, self, [s for pair in stats for s in pair])


def has_running_statistics(model: HSSM) -> bool:
    """True when the blocks' norms keep running statistics (BatchNorm); False for norm "layer"."""
    return any(isinstance(b.norm, BatchNorm) for b in model.blocks)


def _norm_statistics(model: HSSM) -> list:
    """The running-statistics arrays of every block (never trained, updated from the batch statistics);
    empty for norm "layer"."""
    return [leaf for b in model.blocks if isinstance(b.norm, BatchNorm)
            for leaf in (b.norm.running_mean, b.norm.running_var)]


def norm_statistics_untouched(model: HSSM) -> bool:
    """True when every block's running statistics still hold their initial values (mean 0, variance 1);
    False when there are none (norm "layer": nothing to update)."""
    if not has_running_statistics(model):
        return False
    return all(bool(np.all(np.asarray(b.norm.running_mean) == 0)) and bool(np.all(np.asarray(b.norm.running_var) == 1))
               for b in model.blocks)


def trainable(model) -> object:
    """The one selection of trainable arrays: a bool pytree, True for the floating-point arrays an
    optimiser updates; the norm running statistics are False."""
    spec = jax.tree_util.tree_map(eqx.is_inexact_array, model)
    if isinstance(model, HSSM) and has_running_statistics(model):
        spec = eqx.tree_at(_norm_statistics, spec, replace=[False] * (2 * len(model.blocks)))
    return spec


def parameter_groups(model) -> object:
    """Labels for an optimiser with one learning rate for the cores and one for the rest: "core" for every
    HRU's Hamiltonian parameters θ (the linear HRU's a and steps; the nonlinear's w, b, alpha, log_step),
    "rest" for every other trainable array; the pytree of ``eqx.filter(model, trainable(model))``.

        labels = parameter_groups(model)
        optimizer = optax.multi_transform({"core": optax.adam(6.0 / L), "rest": optax.adam(1e-3)},
                                          lambda params: labels)   # a function: optax calls a callable label tree

    Why (docs/longrange.md): Adam moves every parameter by about its learning rate per step, and a change Δθ of
    an oscillator's angle per step turns the phase of everything it integrated by up to Δθ·L; with one learning
    rate for all, long sequences scramble what the oscillators hold.
    """
    labels = jax.tree_util.tree_map(lambda _: "rest", eqx.filter(model, trainable(model)))
    cores = lambda m: [block.hru.theta for block in m.blocks]   # noqa: E731
    return eqx.tree_at(cores, labels, [jax.tree_util.tree_map(lambda _: "core", theta) for theta in cores(model)])


def after_last_core(model: HSSM) -> list:
    """Selector (as ``eqx.tree_at`` takes them): what comes after the last core — its readout C and D, its
    GLU, and the head: the arrays whose gradient passes through no core."""
    last = model.blocks[-1]
    return [last.hru.C, last.hru.D, last.glu, model.head]


def through_cores(model: HSSM) -> object:
    """Bool pytree: the trainable arrays whose gradient passes through at least one core (every trainable
    array not :func:`after_last_core`): what ``hamecho.SPSA`` perturbs."""
    spec = trainable(model)
    after = eqx.tree_at(after_last_core, jax.tree_util.tree_map(lambda _: False, spec),
                        replace_fn=lambda node: jax.tree_util.tree_map(lambda _: True, node))
    return jax.tree_util.tree_map(lambda t, a: t and not a, spec, after)


def count_parameters(model) -> int:
    """Number of trainable numbers (norm running statistics excluded)."""
    leaves = jax.tree_util.tree_leaves(eqx.filter(model, trainable(model)))
    return int(sum(math.prod(a.shape) for a in leaves))


def cast(model, dtype):
    """A copy of ``model`` with every floating-point array cast to ``dtype``."""
    return jax.tree_util.tree_map(
        lambda a: a.astype(dtype) if eqx.is_array(a) and jnp.issubdtype(a.dtype, jnp.floating) else a, model)
