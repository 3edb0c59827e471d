"""Timing on a shared machine: the cases compared run interleaved in one process, round after round.

    from hamecho.tools.timing import interleave, spread, ratio
    times = interleave({"forward": forward, "step": step}, rounds=7)   # {name: [seconds, one per round]}
    spread(times["step"])                  # {"median", "min", "max", "q1", "q3", "n"}
    ratio(times, "step", "forward")        # the per-round ratios step/forward and their spread

Absolute times on a machine other jobs share move by tens of percent from minute to minute, and a
process that has compiled other functions runs a step at another speed than a fresh one. What holds is
the ratio of two computations measured side by side: each round runs every case once (``reps`` times,
keeping the fastest of them), in an order that rotates from round to round, so a slow period hits every
case alike, and the ratio of two cases is taken within each round. :func:`machine_state` records what
the figures depend on (load, cores, huge pages, the backend); every benchmark stores it with its numbers.
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable, Mapping


def _wait(result):
    """Block until a JAX result is computed (asynchronous dispatch); anything else as it is."""
    if "jax" in sys.modules:
        sys.modules["jax"].block_until_ready(result)
    return result


CLOCKS = ("wall", "cpu")


def _clock(clock: str) -> Callable[[], float]:
    """``"wall"``: elapsed seconds; ``"cpu"``: this process's user + system seconds, all its threads."""
    if clock == "wall":
        return time.perf_counter
    if clock == "cpu":
        return lambda: sum(os.times()[:2])
    raise ValueError(f"clock must be one of {', '.join(map(repr, CLOCKS))}; got {clock!r}")


def time_call(fn: Callable[[], object], clock: str = "wall") -> float:
    """Seconds one call of ``fn`` takes, its JAX results computed (``clock``: see :func:`interleave`)."""
    now = _clock(clock)
    start = now()
    _wait(fn())
    return now() - start


def interleave(cases: Mapping[str, Callable[[], object]], rounds: int, *, reps: int = 1, warmup: int = 1,
               clock: str = "wall", progress: Callable[[int, dict], None] | None = None) -> dict[str, list[float]]:
    """Each case's time per round: {name: [seconds] × rounds}.

    ``cases``: name → a function of no arguments running one computation (a training step, a forward
    pass); it may keep state between calls. First every case runs ``warmup`` times (compilation, first
    touches of memory), then ``rounds`` rounds; round r runs the cases in the order rotated by r, each
    ``reps`` times in a row, and keeps the fastest of those. ``clock="cpu"`` counts the processor time
    of this process instead of elapsed time (user + system, every thread): blind to waiting and to how
    many cores ran at once, but nearly blind to other processes too, which elapsed time on a busy machine
    is not. ``progress(round, times so far)`` is called after every round.
    """
    _clock(clock)
    if rounds < 1 or reps < 1 or warmup < 0:
        raise ValueError(f"rounds and reps must be ≥ 1 and warmup ≥ 0; got {rounds}, {reps}, {warmup}")
    names = list(cases)
    for name in names:
        for _ in range(warmup):
            _wait(cases[name]())
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(min(time_call(cases[name], clock) for _ in range(reps)))
        if progress is not None:
            progress(r, times)
    return times


def spread(values) -> dict:
    """Median, extremes and quartiles of a list of measurements (the quartiles by linear interpolation)."""
    values = sorted(values)
    if not values:
        raise ValueError("no measurements")
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else (values[0],) * 3
    return {"median": statistics.median(values), "min": values[0], "max": values[-1], "q1": q1, "q3": q3,
            "n": len(values)}


def ratio(times: Mapping[str, list[float]], numerator: str, denominator: str) -> dict:
    """The per-round ratios ``numerator / denominator`` of :func:`interleave`'s times and their
    :func:`spread` (the figure to report: the median of the ratios, not the ratio of the medians)."""
    pairs = list(zip(times[numerator], times[denominator]))
    ratios = [a / b for a, b in pairs]
    return {**spread(ratios), "per_round": ratios}


def machine_state() -> dict:
    """What a timing depends on besides the code: the load average (1, 5, 15 min), the cores, whether
    malloc uses huge pages (``hamecho.runtime.huge_pages_state``), the kernel's transparent-huge-page mode
    and JAX's backend."""
    from ..runtime import huge_pages_state

    state = {"cpus": os.cpu_count(), "huge_pages": huge_pages_state()}
    try:
        state["load"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        state["load"] = None
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as handle:
            text = handle.read()
        state["thp"] = text[text.index("[") + 1:text.index("]")] if "[" in text else text.strip()
    except (OSError, ValueError):
        state["thp"] = None
    if "jax" in sys.modules:
        state["backend"] = sys.modules["jax"].default_backend()
    return state


def format_spread(s: dict, unit: str = "s", digits: int = 3) -> str:
    """``median (min–max, n)`` for a table cell."""
    return f"{s['median']:.{digits}f}{unit} ({s['min']:.{digits}f}–{s['max']:.{digits}f}, n={s['n']})"
