"""The user's choices — gradient method, integrator, memory strategy — checked together, and their defaults.

This module is the one place where

1. **combinations are checked** (:func:`check_compatible`): every illegal combination of a gradient
   method, an integrator, a memory strategy, a Hamiltonian, a starting state, the model's norm and
   whether a block runs alone is rejected here and nowhere else (the keyword spellings of
   ``hamecho.nn.keywords``, the TOML configuration and ``hamecho bench`` call it too);
2. **defaults are resolved** (the ``"auto"`` rules):

   - ``gradient=None`` → ``RHEL()`` (ε = 0.1, two-sided);
   - ``integrator=None`` → ``AutoLeapfrog()``, the leapfrog with its scan chosen per Hamiltonian
     (:meth:`AutoLeapfrog.resolve`): ``AffineLeapfrog`` (the parallel scan) when the Hamiltonian
     declares itself affine, JAX's default backend is an accelerator and nothing needs a sequential scan
     (checkpointed BPTT, a starting state, time chunks, streaming); ``Leapfrog`` otherwise — on CPU the
     sequential scan is the faster one;
   - ``dtype="auto"`` (of ``Leapfrog``, ``AffineLeapfrog``, ``AutoLeapfrog``) → the core integrates in
     float64 when JAX's x64 mode is on (a float32 model keeps float32 parameters and activations; its
     cores run in float64), else in the input's dtype (:func:`compute_dtype`; why: a float32 oscillator
     drifts in phase, see docs/precision.md);
   - ``RHEL(difference="auto")`` → ``"quadrature"``, chosen by accuracy (:func:`difference_rule`):
     ``"direct"`` subtraction is never as accurate (docs/precision.md), so it runs only when asked for.

:class:`Choices` carries the three choices through a model call; it is hashable, so equal choices
reuse compiled functions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp

from .affine import AffineLeapfrog
from .gradients import BPTT, RHEL, SPSA, AbstractGradient, PhysicsAware, check_one_of
from .hamiltonians import SeparableHamiltonian
from .integrators import CORE_DTYPES, AbstractIntegrator, Leapfrog
from .memory import AbstractMemory


@dataclass(frozen=True)
class AutoLeapfrog(AbstractIntegrator):
    """The default integrator: the leapfrog, its scan chosen per Hamiltonian (module docstring, rule 2).

    ``integrator=None`` stands for ``AutoLeapfrog()``; ``AutoLeapfrog(dtype="float64")`` is "the default
    integrator for this Hamiltonian, in float64". dtype: as ``Leapfrog``'s (``"auto"``, ``"input"`` or
    ``"float64"``), handed to the integrator it resolves to. It runs nothing itself: each core resolves it
    (:meth:`resolve`), and the combination is checked once resolved.
    """

    per_hamiltonian: ClassVar[bool] = True
    dtype: str = "auto"

    def __post_init__(self):
        check_one_of("dtype", self.dtype, CORE_DTYPES)

    def resolve(self, ham: SeparableHamiltonian, gradient: AbstractGradient, memory=None, *,
                initial_state: bool = False) -> AbstractIntegrator:
        """``AffineLeapfrog(dtype)`` or ``Leapfrog(dtype)`` for a core of ``ham`` (module docstring, rule 2)."""
        needs_sequential = (initial_state or (memory is not None and (memory.carries_state or memory.whole_stack))
                            or (isinstance(gradient, BPTT) and gradient.checkpoint_every is not None))
        if ham.is_affine and not needs_sequential and default_scan() == "parallel":
            return AffineLeapfrog(dtype=self.dtype)
        return Leapfrog(dtype=self.dtype)


@dataclass(frozen=True)
class Choices:
    """A checked (gradient, integrator, memory) triple.

    gradient None means ``RHEL()``; integrator None means ``AutoLeapfrog()`` (the default for each
    Hamiltonian); memory None keeps every activation for autodiff. The defaults are filled in, so
    ``Choices()`` equals ``Choices(gradient=RHEL(), integrator=AutoLeapfrog())``.
    """

    gradient: AbstractGradient | None = None
    integrator: AbstractIntegrator | None = None
    memory: AbstractMemory | None = None

    def __post_init__(self):
        if self.gradient is None:
            object.__setattr__(self, "gradient", RHEL())
        if self.integrator is None:
            object.__setattr__(self, "integrator", AutoLeapfrog())
        for value, base, family, examples in (
                (self.gradient, AbstractGradient, "gradient",
                 "hamecho.RHEL(), hamecho.BPTT(), hamecho.PhysicsAware(), hamecho.SPSA()"),
                (self.integrator, AbstractIntegrator, "integrator",
                 "hamecho.Leapfrog(), hamecho.AffineLeapfrog(), hamecho.FixedPointLeapfrog(), hamecho.AutoLeapfrog()"),
                (self.memory, AbstractMemory, "memory",
                 "hamecho.RecomputeBlocks(), hamecho.TimeChunks(1024), hamecho.Streaming(256)")):
            if value is not None and not isinstance(value, base):
                raise ValueError(f"{family} must be an instance of {base.__name__}, such as {examples}; got {value!r}")
        check_compatible(self.gradient, self.integrator, self.memory)


def check_compatible(gradient: AbstractGradient, integrator: AbstractIntegrator | None, memory=None, *,
                     hamiltonian: SeparableHamiltonian | None = None, initial_state: bool = False,
                     norm: str | None = None, block_alone: bool = False) -> None:
    """Raise ``ValueError`` for an illegal combination; the message names both sides and the way out.

    integrator None or ``AutoLeapfrog`` (chosen per Hamiltonian) is checked once resolved, that is when
    ``hamiltonian`` is given. ``initial_state``: the core starts from a given state (time chunks do this
    for every block). ``norm``: the model's norm ("batch" | "layer"), checked where the model is known
    (``HSSM.apply``, the TOML configuration, ``hamecho bench``). ``block_alone``: one block runs on its
    own (``Block.__call__``), not inside an HSSM. The memory strategy declares what it needs
    (``hamecho.core.memory.AbstractMemory``): ``carries_state``, ``needs_rhel`` (it runs RHEL's echo
    itself), ``whole_stack`` (it runs the whole stack, stretch by stretch: an integrator that ``streams``
    and a norm local in time).
    """
    checkpointed = isinstance(gradient, BPTT) and gradient.checkpoint_every is not None
    memory_carries = memory is not None and memory.carries_state
    carries_state = initial_state or memory_carries
    what_carries = repr(memory) if memory_carries else "a core with an initial state"
    whole_stack = memory is not None and memory.whole_stack
    if memory is not None and memory.needs_rhel and not isinstance(gradient, RHEL):
        raise ValueError(
            f"{memory!r} works with RHEL only: it keeps no activations and rebuilds every block's inputs by "
            f"running the Hamiltonian cores backwards during RHEL's echo, while {gradient!r} differentiates "
            "through activations it would have to store. Use gradient=hamecho.RHEL(), or for BPTT "
            "memory=hamecho.TimeChunks(n), which keeps each block's input")
    if whole_stack and block_alone:
        raise ValueError(f"{memory!r} runs a whole HSSM stack at once (HSSM.apply): a block alone cannot rebuild "
                         "its input; call the HSSM, or give the block memory=hamecho.TimeChunks(n)")
    if whole_stack and norm is not None and norm != "layer":
        raise ValueError(
            f"{memory!r} needs HSSM(norm='layer'); got norm={norm!r}. BatchNorm normalises over all (time, "
            "batch), so every step's input gradient depends on the cotangents of every step (their mean over "
            "time), which a single reverse pass over time chunks knows only at its end; norm='layer' "
            "normalises each step over its features, so every block is local in time and can stream")
    if isinstance(gradient, SPSA) and memory is not None:
        raise ValueError(f"{gradient!r} evaluates the loss only (every array before the last core is perturbed, the "
                         f"rest differentiated without entering a core): no activation is stored for a memory "
                         f"strategy to save; use memory=None, not {memory!r}")
    if integrator is None:
        integrator = AutoLeapfrog()
    if isinstance(gradient, PhysicsAware):
        check_physics_aware(gradient, integrator)
    if integrator.per_hamiltonian and hamiltonian is not None:
        integrator = integrator.resolve(hamiltonian, gradient, memory, initial_state=initial_state)
    if not integrator.per_hamiltonian:
        if whole_stack and not integrator.streams:
            raise ValueError(f"{memory!r} rebuilds each chunk with a sequential scan run backwards from its final "
                             f"state: use hamecho.Leapfrog() or hamecho.FixedPointLeapfrog(); "
                             f"got {integrator.label()}")
        if isinstance(gradient, BPTT) and not integrator.differentiable:
            raise ValueError(
                f"{integrator.label()} cannot be differentiated by BPTT ({integrator.not_differentiable_because}); "
                "it works with RHEL only: use gradient=hamecho.RHEL(), or hamecho.Leapfrog() for a BPTT reference")
        if checkpointed and integrator.parallel:
            raise ValueError(f"{gradient!r} (BPTT with gradient checkpointing over time) needs a sequential scan "
                             f"(hamecho.Leapfrog()); got {integrator!r}")
        if carries_state and not integrator.starts_from_state:
            raise ValueError(f"{what_carries} (blocks run over time chunks) needs a sequential scan in floating "
                             f"point (hamecho.Leapfrog()); got {integrator.label()}")
        if hamiltonian is not None and integrator.parallel and not hamiltonian.is_affine:
            raise ValueError(f"{integrator!r} (the parallel scan) needs a Hamiltonian that declares itself affine "
                             f"(affine_stiffness, a time-invariant affine step, like the linear HRU); Hamiltonian "
                             f"{hamiltonian.name!r} is not: use hamecho.Leapfrog()")
    if checkpointed and carries_state:
        raise ValueError(f"{gradient!r} (BPTT with gradient checkpointing) runs whole sequences from the zero state "
                         f"and cannot be combined with {what_carries}: time chunks already keep only each chunk's "
                         "start state")


def check_physics_aware(gradient: PhysicsAware, integrator: AbstractIntegrator) -> None:
    """``PhysicsAware`` needs a device that reports measured states, and a twin BPTT can run step by step."""
    if not integrator.measures_states:
        raise ValueError(
            f"{gradient!r} runs the forward pass on a device and backpropagates through its twin at the states the "
            f"device measured; {integrator.label()} is a digital integrator, which measures nothing (on it "
            "physics-aware training is BPTT): use gradient=hamecho.BPTT(), or integrator=a hamecho.physical device")
    twin = physics_aware_twin(gradient, integrator)
    if twin.measures_states or not twin.differentiable or not twin.starts_from_state:
        raise ValueError(
            f"the twin of {gradient!r} must be an integrator BPTT can differentiate one step at a time from a "
            "measured state (hamecho.Leapfrog(), hamecho.physical.DampedLeapfrog(...), "
            "hamecho.physical.ExactFlow(...), "
            f"hamecho.physical.SimulatedTwin(...)); got {twin.label()}")


def physics_aware_twin(gradient: PhysicsAware, device: AbstractIntegrator) -> AbstractIntegrator:
    """The twin ``PhysicsAware`` backpropagates through: its own, or the device's (``device.twin()``)."""
    return device.twin() if gradient.twin is None else gradient.twin


def default_scan() -> str:
    """The faster scan on this backend for an affine Hamiltonian: sequential on CPU, parallel elsewhere."""
    return "sequential" if jax.default_backend() == "cpu" else "parallel"


def integrator_for(ham: SeparableHamiltonian, choices: Choices, *, initial_state: bool = False):
    """The integrator a core of ``ham`` runs with under ``choices`` (``AutoLeapfrog`` resolved), checked
    against the Hamiltonian."""
    integrator = choices.integrator.resolve(ham, choices.gradient, choices.memory, initial_state=initial_state)
    check_compatible(choices.gradient, integrator, choices.memory, hamiltonian=ham, initial_state=initial_state)
    return integrator


def compute_dtype(dtype_choice: str, input_dtype, who: str = "core_dtype='float64'"):
    """The dtype a core integrates in, for the choice ``"auto"``/``"input"``/``"float64"`` (rule 3).

    ``who`` names the choice in the error raised when float64 is asked for outside x64 mode.
    """
    if dtype_choice == "input":
        return jnp.dtype(input_dtype)
    x64 = jax.config.jax_enable_x64
    if dtype_choice == "float64" and not x64:
        raise ValueError(f"{who} integrates in float64, which needs JAX's x64 mode: "
                         "jax.config.update('jax_enable_x64', True) before building arrays")
    return jnp.dtype(jnp.float64) if x64 else jnp.dtype(input_dtype)


def difference_rule(rhel: RHEL) -> str:
    """How the echo differences its two branches (rule 4): ``"auto"`` is ``"quadrature"``, for every
    Hamiltonian, dtype and ε.

    Chosen by accuracy. Quadrature computes RHEL's estimator to rounding; direct subtraction of the two
    echoes' energy gradients cancels digits. On the nonlinear HRU in float64 (gradcheck's problem, L = 1000)
    the direct gradient differed from the quadrature one by 3e-8 (ε = 1) to 2e-7 (ε = 0.1) relative, and
    by 1.5e-5 at ε = 1e-3; against BPTT it was as accurate only where RHEL's own O(ε²) bias hides that
    (ε ≥ 0.3), and it was 5 % faster there (0.95×) (``benchmarks/difference_rule.py``, docs/precision.md).
    Affine Hamiltonians and float32 cores had quadrature already. ``"direct"`` stays for those who ask:
    it is how a physical system differences its two echoes.
    """
    return "quadrature" if rhel.difference == "auto" else rhel.difference
