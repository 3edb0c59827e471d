"""The string keywords — ``algo=``, ``eps=``, ``scan=``, …, ``CoreOptions`` and the TOML ``[train]`` keys —
translated into strategy objects, in this one place.

Before the strategy objects existed every choice was a keyword; scripts, configuration files and
stored results use them, so they keep working. :func:`choices_from` is the single door every public
entry point goes through: it takes either strategy objects (``gradient=``, ``integrator=``,
``memory=``) or a ``CoreOptions`` / the old keywords, never both, and returns a checked
:class:`~hamecho.core.choices.Choices`.

    old keyword                          strategy object
    algo="rhel", eps, estimator,         gradient=RHEL(eps, estimator, difference)
      difference
    algo="bptt", checkpoint_chunk=K      gradient=BPTT(checkpoint_every=K)
    scan="sequential" / "parallel"       integrator=Leapfrog(dtype=core_dtype) / AffineLeapfrog(dtype=core_dtype)
    scan="auto", core_dtype              integrator=None (the default per Hamiltonian), dtype=core_dtype
    integrator="fixed_point",            integrator=FixedPointLeapfrog(fraction_bits)
      fraction_bits
    recompute_blocks=True                memory=RecomputeBlocks()
    block_chunk=K                        memory=TimeChunks(K)
    stream_chunk=K                       memory=Streaming(K)   (RHEL and HSSM(norm="layer") only)
"""
from __future__ import annotations

from dataclasses import dataclass, fields

from .core.affine import AffineLeapfrog
from .core.choices import Choices, compute_dtype, difference_rule, integrator_for
from .core.fixed_point import DEFAULT_FRACTION_BITS, FixedPointLeapfrog, check_fraction_bits
from .core.gradients import BPTT, RHEL, check_one_of, check_positive_int
from .core.integrators import CORE_DTYPES, Leapfrog
from .nn.memory import RecomputeBlocks, TimeChunks
from .nn.streaming import Streaming

# The allowed values of the string keywords (the TOML configuration uses these lists too).
ALGOS = ("bptt", "rhel")
SCANS = ("auto", "sequential", "parallel")
INTEGRATORS = ("float", "fixed_point")


@dataclass(frozen=True)
class CoreOptions:
    """The old options object: every choice as a keyword. ``.choices`` is the translation (module doc).

    Kept so existing scripts run unchanged; new code passes ``gradient=``, ``integrator=``, ``memory=``.
    Invalid values and illegal combinations raise ``ValueError`` at construction.
    """

    algo: str = "rhel"
    eps: float = 0.1
    estimator: str = "two_sided"
    scan: str = "auto"
    difference: str = "auto"
    core_dtype: str = "auto"
    checkpoint_chunk: int | None = None
    recompute_blocks: bool = False
    block_chunk: int | None = None
    stream_chunk: int | None = None
    integrator: str = "float"
    fraction_bits: int = DEFAULT_FRACTION_BITS

    def __post_init__(self):
        object.__setattr__(self, "_choices", _translate(self))

    @property
    def choices(self) -> Choices:
        return self._choices

    # --- what the old object answered, now asked of the strategies ----------------------------------
    @property
    def fixed_point(self) -> bool:
        return self.integrator == "fixed_point"

    def scan_for(self, ham) -> str:
        """"parallel" or "sequential": the scan a core of ``ham`` runs with these options."""
        return "parallel" if integrator_for(ham, self.choices).parallel else "sequential"

    def compute_dtype(self, input_dtype):
        return compute_dtype(self.core_dtype, input_dtype)

    def difference_rule(self, ham, core_dtype) -> str:
        return difference_rule(RHEL(self.eps, self.estimator, self.difference), ham, core_dtype)

    def nudge_weights(self) -> tuple[float, float]:
        return RHEL(self.eps, self.estimator, self.difference).nudge_weights()


KEYWORDS = tuple(f.name for f in fields(CoreOptions))


def _translate(o: CoreOptions) -> Choices:
    check_one_of("algo", o.algo, ALGOS)
    check_one_of("scan", o.scan, SCANS)
    check_one_of("core_dtype", o.core_dtype, CORE_DTYPES)
    check_one_of("integrator", o.integrator, INTEGRATORS)
    rhel = RHEL(o.eps, o.estimator, o.difference)  # eps, estimator and difference are checked for BPTT too
    check_fraction_bits(o.fraction_bits)
    if o.checkpoint_chunk is not None:
        check_positive_int("checkpoint_chunk", o.checkpoint_chunk, " or None")
        if o.algo != "bptt":
            raise ValueError("checkpoint_chunk (BPTT with gradient checkpointing over time) needs algo='bptt' "
                             f"and a sequential scan; got algo={o.algo!r}")
    gradient = rhel if o.algo == "rhel" else BPTT(checkpoint_every=o.checkpoint_chunk)
    if o.integrator == "fixed_point":
        if o.scan == "parallel":
            raise ValueError("integrator='fixed_point' runs a sequential scan; got scan='parallel' "
                             "(use 'sequential' or 'auto')")
        integrator = FixedPointLeapfrog(fraction_bits=o.fraction_bits)
    else:
        integrator = {"auto": None, "sequential": Leapfrog(dtype=o.core_dtype),
                      "parallel": AffineLeapfrog(dtype=o.core_dtype)}[o.scan]
    strategies = (("recompute_blocks", o.recompute_blocks), ("block_chunk", o.block_chunk is not None),
                  ("stream_chunk", o.stream_chunk is not None))
    chosen = [name for name, on in strategies if on]
    if len(chosen) > 1:
        raise ValueError(f"{' and '.join(chosen)} are memory strategies (recompute_blocks: RecomputeBlocks, "
                         "block_chunk: TimeChunks, stream_chunk: Streaming); choose one")
    memory = (TimeChunks(o.block_chunk) if o.block_chunk is not None else Streaming(o.stream_chunk)
              if o.stream_chunk is not None else RecomputeBlocks() if o.recompute_blocks else None)
    return Choices(gradient=gradient, integrator=integrator, memory=memory, dtype=o.core_dtype)


def choices_from(options=None, *, gradient=None, integrator=None, memory=None, **keywords) -> Choices:
    """The checked ``Choices`` for strategy objects, a ``CoreOptions``/``Choices``, or the old keywords.

    ``integrator`` given as a string ("float", "fixed_point") is the old keyword. Mixing the two ways
    raises ``ValueError``; unknown keywords raise ``TypeError`` naming the allowed ones.
    """
    if isinstance(integrator, str):
        keywords["integrator"] = integrator
        integrator = None
    unknown = sorted(set(keywords) - set(KEYWORDS))
    if unknown:
        raise TypeError(f"unknown option {unknown[0]!r}; the choices are gradient=, integrator=, memory= "
                        f"(or the old keywords {', '.join(KEYWORDS)})")
    objects_given = any(v is not None for v in (gradient, integrator, memory))
    if options is not None and (keywords or objects_given):
        raise ValueError("give the choices once: either an options object or keywords, not both")
    if keywords and objects_given:
        raise ValueError("give the choices either as strategy objects (gradient=, integrator=, memory=) or as "
                         f"the old keywords ({', '.join(sorted(keywords))}), not both")
    if isinstance(options, Choices):
        return options
    if isinstance(options, CoreOptions):
        return options.choices
    if options is not None:
        raise ValueError(f"options must be a hamecho.CoreOptions; got {type(options).__name__} "
                         "(new code passes gradient=, integrator=, memory=)")
    if keywords:
        return CoreOptions(**keywords).choices
    return Choices(gradient=RHEL() if gradient is None else gradient, integrator=integrator, memory=memory)
