"""The keyword spelling of the choices, translated into strategy objects in this one place.

Before the strategy objects existed every choice was a keyword. Two spellings keep them:

- the TOML ``[train]`` keys, for good (stored configurations and run fingerprints depend on them):
  ``hamecho.training.config`` hands them to :func:`choices_from_keywords`;
- the Python keywords of ``hamecho.value_and_grad`` and ``hamecho.train_step`` (and a ``CoreOptions``
  passed there), deprecated: :func:`choices_at_entry` translates them and warns once with the strategy
  objects to write instead. Layers and models take strategy objects only.

    keyword                              strategy object
    algo="rhel", eps, estimator,         gradient=RHEL(eps, estimator, difference)
      difference
    algo="bptt", checkpoint_chunk=K      gradient=BPTT(checkpoint_every=K)
    scan="auto", core_dtype              integrator=AutoLeapfrog(dtype=core_dtype)
    scan="sequential" / "parallel"       integrator=Leapfrog(dtype=core_dtype) / AffineLeapfrog(dtype=core_dtype)
    integrator="fixed_point",            integrator=FixedPointLeapfrog(fraction_bits)
      fraction_bits
    recompute_blocks=True                memory=RecomputeBlocks()
    block_chunk=K                        memory=TimeChunks(K)
    stream_chunk=K                       memory=Streaming(K)   (RHEL and HSSM(norm="layer") only)

The checks here are of the spelling alone (an allowed value, one strategy per slot); every rule between
the strategies is ``hamecho.core.choices.check_compatible``'s.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, fields

from ..core.affine import AffineLeapfrog
from ..core.choices import AutoLeapfrog, Choices
from ..core.fixed_point import FixedPointLeapfrog, check_fraction_bits
from ..core.gradients import BPTT, RHEL, check_one_of
from ..core.integrators import Leapfrog
from .memory import RecomputeBlocks, TimeChunks
from .streaming import Streaming

# The allowed values of the string keywords (the TOML configuration uses these lists too).
ALGOS = ("bptt", "rhel")
SCANS = ("auto", "sequential", "parallel")
INTEGRATORS = ("float", "fixed_point")


def choices_from_keywords(*, algo: str = "rhel", eps: float = RHEL.eps, estimator: str = RHEL.estimator,
                          scan: str = "auto", difference: str = RHEL.difference,
                          core_dtype: str = AutoLeapfrog.dtype, checkpoint_chunk: int | None = None,
                          recompute_blocks: bool = False, block_chunk: int | None = None,
                          stream_chunk: int | None = None, integrator: str = "float",
                          fraction_bits: int = FixedPointLeapfrog.fraction_bits) -> Choices:
    """The checked ``Choices`` the keywords stand for (module docstring). ``ValueError`` for a value not
    allowed, two strategies named for one slot, or an illegal combination (``check_compatible``)."""
    check_one_of("algo", algo, ALGOS)
    check_one_of("scan", scan, SCANS)
    check_one_of("integrator", integrator, INTEGRATORS)
    rhel = RHEL(eps, estimator, difference)  # eps, estimator and difference are checked for BPTT too
    check_fraction_bits(fraction_bits)
    if checkpoint_chunk is not None and algo != "bptt":
        raise ValueError("checkpoint_chunk is BPTT's (hamecho.BPTT(checkpoint_every=K)): it needs algo='bptt'; "
                         f"got algo={algo!r}")
    gradient = rhel if algo == "rhel" else BPTT(checkpoint_every=checkpoint_chunk)
    if integrator == "fixed_point":
        if scan == "parallel":
            raise ValueError("integrator='fixed_point' (hamecho.FixedPointLeapfrog) is a sequential scan and "
                             "scan='parallel' another integrator (hamecho.AffineLeapfrog): choose one")
        integrator = FixedPointLeapfrog(fraction_bits=fraction_bits)
    else:
        integrator = {"auto": AutoLeapfrog, "sequential": Leapfrog, "parallel": AffineLeapfrog}[scan](dtype=core_dtype)
    named = [(name, strategy) for name, strategy in (
        ("recompute_blocks", RecomputeBlocks() if recompute_blocks else None),
        ("block_chunk", None if block_chunk is None else TimeChunks(block_chunk)),
        ("stream_chunk", None if stream_chunk is None else Streaming(stream_chunk))) if strategy is not None]
    if len(named) > 1:
        raise ValueError(f"{' and '.join(name for name, _ in named)} are memory strategies (recompute_blocks: "
                         "RecomputeBlocks, block_chunk: TimeChunks, stream_chunk: Streaming); choose one")
    return Choices(gradient=gradient, integrator=integrator, memory=named[0][1] if named else None)


@dataclass(frozen=True)
class CoreOptions:
    """Deprecated: every choice as a keyword, as ``hamecho.value_and_grad``/``train_step`` took them
    before the strategy objects. ``.choices`` is the translation (:func:`choices_from_keywords`); invalid
    values and illegal combinations raise ``ValueError`` at construction. New code passes ``gradient=``,
    ``integrator=``, ``memory=``.
    """

    algo: str = "rhel"
    eps: float = RHEL.eps
    estimator: str = RHEL.estimator
    scan: str = "auto"
    difference: str = RHEL.difference
    core_dtype: str = AutoLeapfrog.dtype
    checkpoint_chunk: int | None = None
    recompute_blocks: bool = False
    block_chunk: int | None = None
    stream_chunk: int | None = None
    integrator: str = "float"
    fraction_bits: int = FixedPointLeapfrog.fraction_bits

    def __post_init__(self):
        object.__setattr__(self, "_choices", choices_from_keywords(**{f.name: getattr(self, f.name)
                                                                      for f in fields(self)}))

    @property
    def choices(self) -> Choices:
        return self._choices


KEYWORDS = tuple(f.name for f in fields(CoreOptions))

# The deprecation messages already shown in this process (each is shown once).
WARNED: set[str] = set()


def new_spelling(choices: Choices) -> str:
    """The strategy objects of ``choices`` as a call would write them."""
    parts = [f"gradient=hamecho.{choices.gradient!r}"]
    if choices.integrator != AutoLeapfrog():
        parts.append(f"integrator=hamecho.{choices.integrator!r}")
    if choices.memory is not None:
        parts.append(f"memory=hamecho.{choices.memory!r}")
    return ", ".join(parts)


def choices_at_entry(entry: str, options, old_keywords: dict, *, gradient=None, integrator=None,
                     memory=None) -> Choices:
    """The checked ``Choices`` of a ``hamecho.<entry>`` call (``value_and_grad``, ``train_step``).

    The strategy objects; or, deprecated, a ``CoreOptions`` (``options``) or the old keywords
    (``integrator`` given as a string is the old keyword): translated, with a ``DeprecationWarning``
    naming the strategy objects to write instead, once per spelling. Mixing the two ways raises
    ``ValueError``; unknown keywords raise ``TypeError`` naming the allowed ones.
    """
    old_keywords = dict(old_keywords)
    if isinstance(integrator, str):
        old_keywords["integrator"], integrator = integrator, None
    unknown = sorted(set(old_keywords) - set(KEYWORDS))
    if unknown:
        raise TypeError(f"hamecho.{entry}() got an unexpected keyword {unknown[0]!r}; the choices are gradient=, "
                        "integrator=, memory= (strategy objects)")
    objects_given = any(v is not None for v in (gradient, integrator, memory))
    if options is None and not old_keywords:
        return Choices(gradient=gradient, integrator=integrator, memory=memory)
    if options is not None and not isinstance(options, CoreOptions):
        raise ValueError(f"hamecho.{entry}: the positional options must be a hamecho.CoreOptions (deprecated); got "
                         f"{type(options).__name__}: pass the choices as gradient=, integrator=, memory=")
    if objects_given or (options is not None and old_keywords):
        raise ValueError(f"hamecho.{entry}: give the choices once, as strategy objects (gradient=, integrator=, "
                         "memory=); the deprecated options object and old keywords cannot be mixed with them")
    choices = options.choices if options is not None else CoreOptions(**old_keywords).choices
    spelled = "a CoreOptions is" if options is not None else \
        "the keywords " + ", ".join(f"{name}=" for name in sorted(old_keywords)) + " are"
    message = (f"hamecho.{entry}: {spelled} deprecated (same results); write "
               f"hamecho.{entry}(..., {new_spelling(choices)})")
    if message not in WARNED:
        WARNED.add(message)
        warnings.warn(message, DeprecationWarning, stacklevel=3)
    return choices
