"""Layers: Hamiltonian recurrent units (generic, linear, nonlinear), a dense layer, GLU, BatchNorm, LayerNorm.

Inside the HSSM every layer works on time-major activations ``(L, N, H)`` (time, batch, features): the
HRU core scans over the leading axis, and one layout through the whole stack avoids transposes. Called
directly, an HRU layer also takes a batch-first ``(N, L, H)`` input (``batch_first=True``) or one
sequence ``(L, H)`` (to use under ``jax.vmap`` like the ``eqx.nn`` layers); see :func:`time_major`.

An HRU layer maps u (L, N, H) to

    drives = B·u                       (L, N, P)
    φ      = Hamiltonian core(drives)  (L, N, P)   positions, from the zero state
    y      = C·φ + D ⊙ u               (L, N, H)

The core is differentiated as the call's choices say (``gradient=RHEL()`` or ``BPTT()``,
``integrator=...``; see ``hamecho.core.choices``); B, C and D (outside the core) always get their
gradients by ordinary autodiff, from the core's per-step drive gradient.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
from jaxtyping import Array, Float, PyTree

from ..core.choices import Choices
from ..core.engine import retrace_error as core_retrace_error
from ..core.engine import run_core
from ..core.hamiltonians import LINEAR_HAMILTONIAN, NONLINEAR_HAMILTONIAN, SeparableHamiltonian, validate_hamiltonian

# An HRU's input and output (jaxtyping, for readers and type checkers): (L, N, H), (N, L, H) or (L, H).
HRUInput = Float[ArrayLike, "*sequence hidden"]
HRUOutput = Float[Array, "*sequence hidden"]


def time_major(u, batch_first: bool, width: int | None = None, name: str = "u"):
    """u as (L, N, H) and the function that puts an output back in u's layout.

    u: (L, N, H) time-major, (N, L, H) with ``batch_first``, or one sequence (L, H). ``width``: the H the
    caller expects (``ValueError`` naming ``name`` and the width otherwise; None: not checked).
    """
    if width is not None and u.ndim in (2, 3) and u.shape[-1] != width:
        raise ValueError(f"{name} has {u.shape[-1]} features per step (shape {u.shape}) but the layer expects "
                         f"{width}: {name} is (L, N, {width}) time-major, (N, L, {width}) with batch_first=True, or "
                         f"one sequence (L, {width})")
    if u.ndim == 2:
        return u[:, None], lambda out: out[:, 0]
    if u.ndim != 3:
        raise ValueError(f"input must be (L, N, H), (N, L, H) with batch_first=True, or one sequence (L, H); "
                         f"got shape {u.shape}")
    if batch_first:
        return jnp.swapaxes(u, 0, 1), lambda out: jnp.swapaxes(out, 0, 1)
    return u, lambda out: out


def _uniform(key, shape, bound, dtype):
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def _require_positive(**sizes):
    for name, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")


# --- feed-forward parts ---------------------------------------------------------------------------

class Dense(eqx.Module):
    """y = x·Wᵀ + b on the last axis (any leading axes). weight (out, in), bias (out,).

    Initialised like ``eqx.nn.Linear``: U(±1/√in) for both.
    """

    weight: jax.Array
    bias: jax.Array

    def __init__(self, in_features: int, out_features: int, *, key, dtype=jnp.float32):
        _require_positive(in_features=in_features, out_features=out_features)
        w_key, b_key = jax.random.split(key)
        bound = 1.0 / math.sqrt(in_features)
        self.weight = _uniform(w_key, (out_features, in_features), bound, dtype)
        self.bias = _uniform(b_key, (out_features,), bound, dtype)

    def __call__(self, x):
        return x @ self.weight.T + self.bias


class GLU(eqx.Module):
    """Gated linear unit H → H: (W₁x + b₁) ⊙ sigmoid(W₂x + b₂), per time step."""

    value: Dense
    gate: Dense

    def __init__(self, features: int, *, key, dtype=jnp.float32):
        value_key, gate_key = jax.random.split(key)
        self.value = Dense(features, features, key=value_key, dtype=dtype)
        self.gate = Dense(features, features, key=gate_key, dtype=dtype)

    def __call__(self, x):
        return self.value(x) * jax.nn.sigmoid(self.gate(x))


class BatchNorm(eqx.Module):
    """Per-channel normalisation over batch and time, no affine part (as in the paper's code).

    In training mode it uses the statistics of the current batch (over all of (L, N)) and returns
    updated running statistics; in inference mode it uses the running statistics. The running
    statistics are arrays of the module but are never differentiated (``stop_gradient``); the
    training loop replaces them with the returned values (``HSSM.with_norm_stats``).
    """

    running_mean: jax.Array
    running_var: jax.Array
    momentum: float = eqx.field(static=True, default=0.99)
    eps: float = eqx.field(static=True, default=1e-5)

    def __init__(self, features: int, *, dtype=jnp.float32, momentum: float = 0.99, eps: float = 1e-5):
        self.running_mean = jnp.zeros((features,), dtype)
        self.running_var = jnp.ones((features,), dtype)
        self.momentum = momentum
        self.eps = eps

    def __call__(self, x, train: bool):
        """x (L, N, H) → (normalised x, (new running mean, new running var))."""
        mean, var, stats = self.statistics(x, train)
        return self.normalise(x, mean, var), stats

    def statistics(self, x, train: bool):
        """(mean, var) to normalise x (L, N, H) with, and the running statistics to keep afterwards.

        Training mode: the batch statistics over all of (L, N) (differentiable) and the updated running
        statistics; inference mode: the running statistics, twice.
        """
        running_mean = jax.lax.stop_gradient(self.running_mean)
        running_var = jax.lax.stop_gradient(self.running_var)
        if not train:
            return running_mean, running_var, (running_mean, running_var)
        axes = tuple(range(x.ndim - 1))
        mean = jnp.mean(x, axis=axes)
        var = jnp.mean(jnp.square(x - mean), axis=axes)
        new_mean = self.momentum * running_mean + (1 - self.momentum) * jax.lax.stop_gradient(mean)
        new_var = self.momentum * running_var + (1 - self.momentum) * jax.lax.stop_gradient(var)
        return mean, var, (new_mean, new_var)

    def normalise(self, x, mean, var):
        """(x − mean) / √(var + eps), any leading shape."""
        return (x - mean) / jnp.sqrt(var + self.eps)


class LayerNorm(eqx.Module):
    """Per-step normalisation over the features, no affine part: (x − mean) / √(var + eps) of each step
    and sample over its H features alone. Local in time, so a block with it can stream (``Streaming``).

    The same interface as :class:`BatchNorm` with nothing to keep: no running statistics (``()``), and
    training and inference mode normalise alike.
    """

    eps: float = eqx.field(static=True, default=1e-5)

    def __init__(self, features: int | None = None, *, dtype=None, eps: float = 1e-5):
        del features, dtype  # nothing to store
        self.eps = eps

    def __call__(self, x, train: bool):
        """x (..., H) → (normalised x, ()): no statistics to keep."""
        return self.normalise(x), ()

    def statistics(self, x, train: bool):
        """No statistics across steps: (None, None, ())."""
        return None, None, ()

    def normalise(self, x, mean=None, var=None):
        """Each step over its features; ``mean``/``var`` (from ``statistics``) are None and ignored."""
        mean = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
        return (x - mean) / jnp.sqrt(var + self.eps)


NORMS = {"batch": BatchNorm, "layer": LayerNorm}


def dropout_keep_mask(key, rate: float, shape):
    """The boolean keep-mask ``dropout`` draws for ``key`` (True: kept), or None without dropout.

    The mask is packed into bits and unpacked again (:func:`packed_bits`; the same booleans): XLA otherwise
    fuses the draw's comparison into every use of the mask, so the two 32-bit random words behind each
    element stayed alive from the forward pass to the backward, 8 bytes per element where the packed mask
    keeps 1 bit (docs/performance.md: a sixth of the paper's nonlinear model's peak).
    """
    if key is None or rate == 0.0:
        return None
    keep = jax.random.bernoulli(key, 1.0 - rate, shape)
    return unpacked_bits(packed_bits(keep), shape[-1]) if shape else keep


def packed_bits(mask):
    """Booleans (..., n) → uint8 (..., ⌈n/8⌉), eight to a byte along the last axis (element i of a byte is
    bit i). A reduction, so XLA stores its result instead of fusing the mask's computation into its users."""
    pad = -mask.shape[-1] % 8
    bits = jnp.pad(mask, [(0, 0)] * (mask.ndim - 1) + [(0, pad)]).astype(jnp.uint8)
    bits = bits.reshape(mask.shape[:-1] + (-1, 8))
    return jnp.sum(bits << jnp.arange(8, dtype=jnp.uint8), axis=-1, dtype=jnp.uint8)


def unpacked_bits(packed, n: int):
    """The booleans (..., n) :func:`packed_bits` packed."""
    bits = (packed[..., None] >> jnp.arange(8, dtype=jnp.uint8)) & jnp.uint8(1)
    return bits.reshape(packed.shape[:-1] + (-1,))[..., :n].astype(bool)


def _mix32(h):
    """MurmurHash3's 32-bit finaliser: a bijection of uint32 that spreads every input bit over the output."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def step_keep_masks(key, rate: float, steps, shape):
    """Keep-masks drawn per time step: (S, *shape) booleans for the absolute step indices ``steps`` (S,),
    or None without ``key``.

    Step k's mask depends on ``fold_in(key, k)`` and k alone, so any stretch of steps draws exactly what
    the whole sequence draws there: a chunked run redraws its masks in the backward pass instead of
    storing them. Within a step, element i is kept when a counter hash of (i, the step key's two words)
    is below (1 − rate)·2³²: one cheap integer hash per element (JAX's bernoulli spends a whole
    threefry block per element, which made drawing the masks twice, as streaming does, cost a third
    of a training step).
    """
    if key is None or rate == 0.0:
        return None
    threshold = jnp.uint32(min(round((1.0 - rate) * 2.0**32), 2**32 - 1))
    counters = jnp.arange(math.prod(shape), dtype=jnp.uint32).reshape(shape)

    def one_step(step):
        words = jax.random.key_data(jax.random.fold_in(key, step)).astype(jnp.uint32).reshape(-1)
        return _mix32(_mix32(counters ^ words[0]) + words[-1]) < threshold

    return jax.vmap(one_step)(steps)


def apply_dropout(x, keep, rate: float):
    """Inverted dropout with a given keep-mask (None: identity)."""
    if keep is None:
        return x
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


def dropout(x, rate: float, key):
    """Inverted dropout; identity when ``key`` is None (inference and gradient checks)."""
    return apply_dropout(x, dropout_keep_mask(key, rate, x.shape), rate)


# --- Hamiltonian recurrent units --------------------------------------------------------------------

class HRU(eqx.Module):
    """Generic Hamiltonian recurrent unit from any separable energy H = T(π; θ) + V(φ; θ, B·u).

    hamiltonian: a ``SeparableHamiltonian`` (module-level energy functions, see hamiltonians.py);
    theta: the energies' parameters (a pytree of arrays), B (P, H), C (H, P), D (H,).
    Construction checks the time-reversal contract (T even in π) and the energy shapes on random
    states and raises ``ValueError`` otherwise. Every force and every parameter gradient comes from
    ``jax.grad`` of T and V; nothing else about the energy is needed.
    """

    hamiltonian: SeparableHamiltonian = eqx.field(static=True)
    theta: PyTree
    B: jax.Array
    C: jax.Array
    D: jax.Array

    def __init__(self, hamiltonian: SeparableHamiltonian, theta: PyTree, B, C, D, *, validate: bool = True):
        B, C, D = jnp.asarray(B), jnp.asarray(C), jnp.asarray(D)
        if B.ndim != 2 or C.ndim != 2 or D.ndim != 1 or C.shape != B.shape[::-1] or D.shape[0] != B.shape[1]:
            raise ValueError(f"HRU needs B (P, H), C (H, P), D (H,); got B {B.shape}, C {C.shape}, D {D.shape}")
        self.hamiltonian = hamiltonian
        self.theta = theta
        self.B, self.C, self.D = B, C, D
        if validate:
            validate_hamiltonian(hamiltonian, self.core_parameters(), B.shape[0], B.shape[0])

    @property
    def state_size(self) -> int:
        return self.B.shape[0]

    def core_parameters(self) -> PyTree:
        """The θ the energies see (a subclass may derive it, e.g. tie parameters)."""
        return self.theta

    def drives(self, u):
        """B·u for u (L, N, H) → (L, N, P)."""
        return u @ self.B.T

    def __call__(self, u: HRUInput, *, gradient=None, integrator=None, batch_first: bool = False) -> HRUOutput:
        """u (L, N, H) → y (L, N, H), the core differentiated by ``gradient`` (default ``RHEL()``) and run
        by ``integrator`` (default ``AutoLeapfrog()``: per Hamiltonian, ``hamecho.core.choices``). Also
        (N, L, H) with ``batch_first=True`` and one sequence (L, H) → (L, H)."""
        choices = Choices(gradient=gradient, integrator=integrator)
        u, restore = time_major(u, batch_first, width=self.B.shape[1])
        return restore(self.apply(u, choices))

    def apply(self, u, choices: Choices):
        """``__call__`` with checked choices: u (L, N, H) → y (L, N, H)."""
        with jax.named_scope("hru_linear"):  # B·u (named scopes: docs/performance.md)
            theta, drives = self.core_parameters(), self.drives(u)
        positions = run_core(self.hamiltonian, choices, theta, drives)
        with jax.named_scope("hru_linear"):  # C·φ + D⊙u
            return self.readout(positions, u)

    def readout(self, positions, u):
        """y = C·φ + D ⊙ u for positions (L, N, P) and the layer's input u (L, N, H) → (L, N, H)."""
        return positions @ self.C.T + self.D * u

    def retrace_error(self, u, *, integrator=None, batch_first: bool = False):
        """How far the free (ε = 0) echo of input u (L, N, H) misses the initial state (relative; see
        ``hamecho.core.engine.relative_retrace_error``), with ``integrator`` (default ``AutoLeapfrog()``).
        u in any layout ``__call__`` takes."""
        u, _ = time_major(u, batch_first, width=self.B.shape[1])
        return core_retrace_error(self.hamiltonian, self.core_parameters(), self.drives(u), integrator)


def _readout_init(key, hidden, state, dtype):
    b_key, c_key, d_key = jax.random.split(key, 3)
    return b_key, c_key, jax.random.normal(d_key, (hidden,), dtype)


class LinearHRU(HRU):
    """The paper's linear HRU: H = ½|π|² + ½φᵀAφ − φᵀBu with A = relu(a) ≥ 0, δ = sigmoid(s).

    ``state`` complex oscillators are implemented exactly as 2·state real channels with A and δ
    tied pairwise: B = [B_r; B_i] (2P, H), and Re(C·φ) = C_r φ_r − C_i φ_i is a real C (H, 2P).
    Stability δ²A < 4 holds by construction: A is clipped at 0.999·4/δ² (``linear_stiffness``).
    Initialisation as the paper's code: a, s ~ U[0,1), B ~ U(±1/√H), C ~ U(±1/√P), D ~ N(0,1).
    ``theta`` holds a (P,) and steps (P,).

    ``periods=(shortest, longest)`` (in steps) instead spreads the oscillators' periods log-uniformly over that
    range (:func:`stiffness_for_periods`; s, B, C, D as before): an oscillator of period 2π/θ turns by θ per step,
    cos θ = 1 − δ²A/2. The paper's a ~ U[0,1) gives periods of about 8 steps and up (at most ~40 steps among 16
    oscillators); a task whose evidence must be told apart by *when* it came needs periods of the sequence's
    length (docs/longrange.md).
    """

    def __init__(self, hidden: int, state: int, *, key, dtype=jnp.float32, periods: tuple[float, float] | None = None):
        _require_positive(hidden=hidden, state=state)
        a_key, s_key, key = jax.random.split(key, 3)
        b_key, c_key, D = _readout_init(key, hidden, state, dtype)
        steps = jax.random.uniform(s_key, (state,), dtype)
        a = (jax.random.uniform(a_key, (state,), dtype) if periods is None
             else stiffness_for_periods(a_key, periods, jax.nn.sigmoid(steps)))
        theta = {"a": a, "steps": steps}
        B = _uniform(b_key, (2 * state, hidden), 1.0 / math.sqrt(hidden), dtype)
        C = _uniform(c_key, (hidden, 2 * state), 1.0 / math.sqrt(state), dtype)
        super().__init__(LINEAR_HAMILTONIAN, theta, B, C, D, validate=False)

    def core_parameters(self):
        return {name: jnp.concatenate([value, value]) for name, value in self.theta.items()}


def stiffness_for_periods(key, periods: tuple[float, float], step):
    """a (P,) such that the linear HRU's oscillators with step δ (P,) have periods log-uniform in ``periods``.

    Stratified: oscillator j's angle per step θ_j = 2π/period is drawn uniformly in log θ within the j-th of P
    equal slices of [log 2π/longest, log 2π/shortest], so the range is covered at any P. Then
    a = 4 sin²(θ/2)/δ² (= (2 − 2 cos θ)/δ², without its cancellation), the stiffness whose leapfrog turns by exactly
    θ per step. Periods must be ≥ 2.1 steps
    (θ below the stability limit δ²A < 4).
    """
    shortest, longest = (float(p) for p in periods)
    if not (math.isfinite(shortest) and math.isfinite(longest) and 2.1 <= shortest <= longest):
        raise ValueError(f"periods must be (shortest, longest) with 2.1 <= shortest <= longest steps; got {periods!r}")
    state = step.shape[0]
    low, high = math.log(2 * math.pi / longest), math.log(2 * math.pi / shortest)
    slots = (jnp.arange(state, dtype=step.dtype) + jax.random.uniform(key, (state,), step.dtype)) / state
    angle = jnp.exp(low + (high - low) * slots)
    return 4.0 * jnp.sin(0.5 * angle) ** 2 / step**2


class NonlinearHRU(HRU):
    """The paper's nonlinear HRU: H = ½|π|² + (α/2)|φ|² + Σᵢ log cosh(wᵢφᵢ + (Bu)ᵢ + bᵢ)/wᵢ.

    Force −αφ − tanh(wφ + Bu + b); true leapfrog (kick at the half-step position); sequential scan.
    δ = exp(log_step) is a trained scalar under RHEL and BPTT alike. Initialisation as the paper's
    code: w ~ U(0.5, 1), b = 0, α ~ U(0.1, 1) (one scalar), δ = ``step`` (paper: 1e-4),
    B ~ U(±1/√H), C ~ U(±1/√P), D ~ N(0,1). (The paper's code also scales the log cosh by an extra
    sigmoid(sigmoid(c)) factor that is not in the paper's equation; we follow the equation.)
    """

    def __init__(self, hidden: int, state: int, *, key, step: float = 1e-4, dtype=jnp.float32):
        _require_positive(hidden=hidden, state=state)
        if not (isinstance(step, (int, float)) and math.isfinite(step) and step > 0):
            raise ValueError(f"step must be a finite number > 0; got {step!r}")
        w_key, alpha_key, key = jax.random.split(key, 3)
        b_key, c_key, D = _readout_init(key, hidden, state, dtype)
        theta = {"w": jax.random.uniform(w_key, (state,), dtype, 0.5, 1.0),
                 "b": jnp.zeros((state,), dtype),
                 "alpha": jax.random.uniform(alpha_key, (), dtype, 0.1, 1.0),
                 "log_step": jnp.asarray(math.log(step), dtype)}
        B = _uniform(b_key, (state, hidden), 1.0 / math.sqrt(hidden), dtype)
        C = _uniform(c_key, (hidden, state), 1.0 / math.sqrt(state), dtype)
        super().__init__(NONLINEAR_HAMILTONIAN, theta, B, C, D, validate=False)


HRU_KINDS: dict[str, Callable[..., HRU]] = {"linear": LinearHRU, "nonlinear": NonlinearHRU}


def retrace_error(layer, u, *, integrator=None, batch_first: bool = False):
    """How far the free echo of the HRU ``layer`` driven by u (L, N, H) misses its initial state (relative
    norm; exactly 0 with ``FixedPointLeapfrog``): ``layer.retrace_error(u, integrator=...)``. For a bare
    Hamiltonian: ``hamecho.core.engine.retrace_error(hamiltonian, theta, drives, integrator)``."""
    if not isinstance(layer, HRU):
        raise ValueError(f"retrace_error needs an HRU layer; got {type(layer).__name__} (for a bare Hamiltonian: "
                         "hamecho.core.engine.retrace_error(hamiltonian, theta, drives, integrator))")
    return layer.retrace_error(u, integrator=integrator, batch_first=batch_first)
