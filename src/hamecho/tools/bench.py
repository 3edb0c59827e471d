"""Speed and memory of a full training step: RHEL vs BPTT vs BPTT with gradient checkpointing.

    hamecho bench                         # the full grid (long: up to L = 49,920)
    hamecho bench --quick                 # a small subset
    hamecho bench --algos rhel bptt --models linear --lengths 17984 --batch 4 --json

Every case is measured twice (docs/performance.md says why):

- **Time, interleaved in one process.** For each (model, batch, L) one child process builds the 6-block
  HSSM (hidden 64, state 16, float32 parameters, the default core precision) and one random batch,
  compiles every case's jitted Adam training step (the one ``hamecho train`` uses) and the model's
  forward pass (the training loss in training mode, dropout on), and runs ``--rounds`` rounds, each
  running every case once in an order that rotates from round to round (``hamecho.tools.timing``).
  ``step_time_s`` is the median over rounds, ``step_spread`` its median, quartiles and extremes, and
  ``step_over_forward`` the per-round ratio of the step to the same model's forward pass (median and
  range); the ratios between cases in the tables are per-round ratios too. A busy period of a shared
  machine then hits every case of the round alike; the absolute times still move with the load, which
  every row records (``machine``: load average, cores, whether malloc had huge pages, the kernel's
  transparent-huge-page mode). ``--rounds 0`` skips this part.
- **Memory, one fresh process per case** (so peaks do not mix): it builds the same model, compiles and
  warms up with two steps, then runs ``--reps`` steps. ``peak_mem_bytes`` is the child's peak resident
  set during those steps: after the warm-up the compiler's freed heap is returned to the OS
  (``malloc_trim``) and the kernel's mark (VmHWM) is reset, so compilation's own peak is excluded, while
  the JAX runtime, the compiled code, the model, the data and everything the step allocates are
  included. Also recorded: ``process_peak_bytes`` (the whole process's peak, VmHWM read before the reset:
  compilation included), ``baseline_bytes`` (before the first step) and ``fresh_step_time_s`` (the
  median of those steps: what the older results called the step time).

Every child runs with huge pages for malloc (``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``, as the
``hamecho`` command does; ``HAMECHO_HUGE_PAGES=off`` turns them off) and without the compilation cache.

Algorithms: ``rhel``; ``bptt`` (autodiff through the scan); ``bptt_ckpt`` (autodiff with
``jax.checkpoint`` over chunks of ⌈√L⌉ steps: stores chunk-boundary states, recomputes the rest);
``rhel_chunked`` and ``bptt_chunked`` (the same with ``block_chunk``: every block runs over time
chunks of ``--block-chunk`` steps, recomputed in the backward pass, so a block keeps only its input);
``rhel_recompute`` and ``bptt_recompute`` (``recompute_blocks``: whole blocks recomputed; not in the
default grid); ``rhel_streaming`` (``memory=hamecho.Streaming(--stream-chunk)``: the whole stack over
time chunks forward and backward, nothing of length L kept but the input; RHEL only, and it needs
``HSSM(norm="layer")``). ``--quick`` runs the first three.

Norm: ``--norm layer`` or ``batch`` for every case; by default ``layer`` when ``rhel_streaming`` is in
the run (it cannot stream with BatchNorm, and the other cases then train the same model, so the
comparison is of the memory strategy alone), else ``batch`` (the paper's model, as in the results
recorded before the option). Each row records its ``norm``.
"""
from __future__ import annotations

import csv
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from ..nn.layers import NORMS as NORM_CLASSES
from ..nn.streaming import DEFAULT_CHUNK
from ..runtime import COMPILE_CACHE_ENV, huge_pages_state, with_huge_pages
from ..training.checkpoints import atomic_write_bytes

ALGOS = ("rhel", "bptt", "bptt_ckpt", "rhel_chunked", "bptt_chunked", "rhel_recompute", "bptt_recompute",
         "rhel_streaming")
DEFAULT_ALGOS = ALGOS[:5]
QUICK_ALGOS = ("rhel", "bptt", "bptt_ckpt")
MODELS = ("linear", "nonlinear")
LENGTHS = (1000, 4000, 17984, 49920)
BATCHES = (4, 32)
QUICK = {"algos": QUICK_ALGOS, "models": MODELS, "lengths": (1000,), "batches": (4,), "reps": 5}
BLOCK_CHUNK = 1024  # time steps per chunk for the *_chunked cases (hamecho.TimeChunks)
STREAM_CHUNK = DEFAULT_CHUNK  # time steps per chunk for rhel_streaming (hamecho.Streaming's default)
NORMS = tuple(NORM_CLASSES)  # the HSSM's norms, "batch" and "layer"
SHAPE = {"blocks": 6, "hidden": 64, "state": 16, "in_dim": 6, "classes": 5}
CORE_DTYPES = ("auto", "input")  # auto: float64 cores with a float32 model (the default everywhere); input: all float32
# Cases skipped up front: the BPTT trajectory of the biggest cases does not fit in the memory of the machine the
# grid was written for, together with the runtime (benchmarks/README.md); they are listed as skipped.
DEFAULT_MEMORY_LIMIT_GIB = 20.0


# --- one case, in a child process --------------------------------------------------------------------

def case_choices(algo: str, length: int, core_dtype: str, block_chunk: int = BLOCK_CHUNK,
                 stream_chunk: int = STREAM_CHUNK) -> dict:
    """The strategy objects of case ``algo`` (one of ALGOS, module docstring) at sequence length ``length``,
    as the ``gradient=``, ``integrator=``, ``memory=`` keywords of ``hamecho.train_step``."""
    from ..core.choices import AutoLeapfrog
    from ..core.gradients import BPTT, RHEL
    from ..nn.memory import RecomputeBlocks, TimeChunks
    from ..nn.streaming import Streaming

    if algo not in ALGOS:
        raise ValueError(f"algo must be one of {', '.join(map(repr, ALGOS))}; got {algo!r}")
    method, _, memory = algo.partition("_")
    if memory == "ckpt":
        gradient = BPTT(checkpoint_every=max(1, math.isqrt(length - 1) + 1))
    else:
        gradient = RHEL() if method == "rhel" else BPTT()
    memory = {"": None, "ckpt": None, "recompute": RecomputeBlocks(), "chunked": TimeChunks(block_chunk),
              "streaming": Streaming(stream_chunk)}[memory]
    return {"gradient": gradient, "integrator": AutoLeapfrog(dtype=core_dtype), "memory": memory}


def norm_for(algos, norm: str | None = None) -> str:
    """The norm every case of a run uses: ``norm`` if given, else "layer" when rhel_streaming is among
    ``algos`` (module docstring), else "batch". A case that cannot run with the norm is refused by the
    central rule (``hamecho.core.choices.check_compatible``)."""
    from ..core.choices import check_compatible

    if norm is None:
        return "layer" if "rhel_streaming" in algos else "batch"
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(map(repr, NORMS))}; got {norm!r}")
    for algo in algos:
        choices = case_choices(algo, 2, "auto")
        try:
            check_compatible(choices["gradient"], choices["integrator"], choices["memory"], norm=norm)
        except ValueError as error:
            raise ValueError(f"{algo} with --norm {norm}: {error}") from None
    return norm


def run_case(algo: str, model: str, batch: int, length: int, reps: int, core_dtype: str,
             block_chunk: int = BLOCK_CHUNK, norm: str = "batch", stream_chunk: int = STREAM_CHUNK) -> dict:
    """Build, compile, warm up and time one case in this process; return its row."""
    import jax

    if core_dtype == "auto":
        jax.config.update("jax_enable_x64", True)  # float64 cores, float32 model: the CLI default
    import jax.numpy as jnp

    from ..nn.api import init_optimizer, train_step
    from ..nn.hssm import HSSM
    from ..training import optimizer_for

    key_model, key_x, key_y = jax.random.split(jax.random.PRNGKey(0), 3)
    hssm = HSSM(in_dim=SHAPE["in_dim"], out_dim=SHAPE["classes"], hidden=SHAPE["hidden"], state=SHAPE["state"],
                 blocks=SHAPE["blocks"], hru=model, dtype=jnp.float32, norm=norm, key=key_model)
    x = jax.random.normal(key_x, (batch, length, SHAPE["in_dim"]), jnp.float32)
    y = jax.random.randint(key_y, (batch,), 0, SHAPE["classes"])
    choices = case_choices(algo, length, core_dtype, block_chunk, stream_chunk)
    optimizer = optimizer_for(1e-3)
    opt_state = init_optimizer(optimizer, hssm)
    step = lambda model, opt_state, x, y, key: train_step(model, opt_state, x, y, optimizer, key=key, **choices)
    dropout_key = jax.random.PRNGKey(1)
    baseline = process_peak_rss()
    for _ in range(2):  # compile, then one warm step
        hssm, opt_state, loss = step(hssm, opt_state, x, y, dropout_key)
        jax.block_until_ready(loss)
    # whole process so far, compilation included: read before the mark is reset
    process_peak = process_peak_rss()
    release_freed_memory()  # the compiler's freed heap back to the OS, for every case alike
    reset_peak_rss()  # from here on the peak covers the timed steps only, not compilation
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        hssm, opt_state, loss = step(hssm, opt_state, x, y, dropout_key)
        jax.block_until_ready(loss)
        times.append(time.perf_counter() - start)
    step_peak = process_peak_rss()
    process_peak = max(process_peak, step_peak)
    return {"algo": algo, "model": model, "batch": batch, "length": length,
            "step_time_s": statistics.median(times), "peak_mem_bytes": int(step_peak),
            "process_peak_bytes": int(process_peak), "baseline_bytes": int(baseline), "reps": reps,
            "loss": float(loss), "core_dtype": core_dtype, "backend": jax.default_backend(), "norm": norm,
            "huge_pages": huge_pages_state(),
            **_chunk_keys(algo, block_chunk, stream_chunk)}


def run_group(algos, model: str, batch: int, length: int, rounds: int, core_dtype: str,
              block_chunk: int = BLOCK_CHUNK, norm: str = "batch", stream_chunk: int = STREAM_CHUNK,
              clock: str = "wall") -> dict:
    """Every case of ``algos`` and the forward pass, one model, timed interleaved in this process.

    ``clock``: "wall" (what ``hamecho bench`` reports) or "cpu" (this process's processor seconds: on a
    core other jobs share, nearly blind to them; ``hamecho.tools.timing.interleave``).

    Returns {"forward": spread, "steps": {algo: {"spread", "over_forward"}}, "per_round": {name: [s]},
    "machine": ...}: the spreads of ``hamecho.tools.timing.spread``, the step's per-round ratio to the
    forward pass (``timing.ratio`` without its list), and the raw per-round seconds (for ratios between
    cases).
    """
    import jax

    if core_dtype == "auto":
        jax.config.update("jax_enable_x64", True)
    import equinox as eqx
    import jax.numpy as jnp

    from ..core.choices import AutoLeapfrog, Choices
    from ..nn.api import init_optimizer, loss_and_statistics, train_step
    from ..nn.hssm import HSSM
    from ..training import optimizer_for
    from .timing import interleave, machine_state, ratio, spread

    key_model, key_x, key_y = jax.random.split(jax.random.PRNGKey(0), 3)
    hssm = HSSM(in_dim=SHAPE["in_dim"], out_dim=SHAPE["classes"], hidden=SHAPE["hidden"], state=SHAPE["state"],
                 blocks=SHAPE["blocks"], hru=model, dtype=jnp.float32, norm=norm, key=key_model)
    x = jax.random.normal(key_x, (batch, length, SHAPE["in_dim"]), jnp.float32)
    y = jax.random.randint(key_y, (batch,), 0, SHAPE["classes"])
    optimizer = optimizer_for(1e-3)
    opt_state = init_optimizer(optimizer, hssm)
    key = jax.random.PRNGKey(1)
    forward_choices = Choices(integrator=AutoLeapfrog(dtype=core_dtype))
    forward = eqx.filter_jit(lambda m, x, y, k: loss_and_statistics(m, x, y, forward_choices, k)[0])
    cases = {"forward": lambda: forward(hssm, x, y, key)}
    for algo in algos:
        choices = case_choices(algo, length, core_dtype, block_chunk, stream_chunk)
        cases[algo] = lambda choices=choices: train_step(hssm, opt_state, x, y, optimizer, key=key, **choices)
    times = interleave(cases, rounds=rounds, clock=clock)
    machine = {**machine_state(), "clock": clock}

    def brief(r):
        return {k: v for k, v in r.items() if k != "per_round"}

    return {"forward": spread(times["forward"]), "per_round": times, "machine": machine,
            "steps": {algo: {"spread": spread(times[algo]), "over_forward": brief(ratio(times, algo, "forward"))}
                      for algo in algos}}


def run_group_subprocess(algos, model, batch, length, rounds, core_dtype, timeout, block_chunk=BLOCK_CHUNK,
                         norm="batch", stream_chunk=STREAM_CHUNK) -> dict:
    """:func:`run_group` in a fresh interpreter; {"skipped": reason} when it fails or times out."""
    group = json.dumps({"algos": list(algos), "model": model, "batch": batch, "length": length, "rounds": rounds,
                        "core_dtype": core_dtype, "block_chunk": block_chunk, "norm": norm,
                        "stream_chunk": stream_chunk})
    try:
        done = subprocess.run([sys.executable, "-m", "hamecho.tools.bench", "--run-group", group], capture_output=True,
                              text=True, timeout=timeout * (len(algos) + 1), env=_child_env())
    except subprocess.TimeoutExpired:
        return {"skipped": "interleaved timing timed out"}
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"skipped": "killed (out of memory?)" if done.returncode in (-9, 137) else f"failed: {tail}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _chunk_keys(algo: str, block_chunk: int, stream_chunk: int) -> dict:
    """The chunk a case's row records (and resuming matches on): none for the cases without one."""
    if algo.endswith("_chunked"):
        return {"block_chunk": block_chunk}
    return {"stream_chunk": stream_chunk} if algo.endswith("_streaming") else {}


def release_freed_memory() -> bool:
    """Return freed heap memory to the OS (glibc ``malloc_trim``); False where unavailable.

    After compilation the process keeps the compiler's freed memory resident; without this it would
    count in every case's peak although no step uses it.
    """
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return False
    return True


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process (Linux ≥ 4.0); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return read_peak_rss() is not None
    except OSError:
        return False


def process_peak_rss() -> int:
    """This process's peak resident set since it started (exec), in bytes: VmHWM where /proc has it.

    Not ``ru_maxrss``: Linux carries the parent's peak over into a child's ``ru_maxrss`` across
    fork + exec, so a child started by a big process (the main job after training) would report at least
    that process's size.
    """
    import resource

    peak = read_peak_rss()
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def read_peak_rss() -> int | None:
    """VmHWM of this process in bytes (None where /proc is unavailable)."""
    return read_status_bytes("VmHWM")


def read_status_bytes(field: str) -> int | None:
    """A memory field of /proc/self/status (``"VmHWM"``, ``"VmRSS"``, …) in bytes; None where unavailable."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _child_env() -> dict:
    # First-touch page faults are expensive on virtual machines; huge pages for malloc make the memory-heavy
    # cases markedly faster (docs/performance.md). Applied to every case alike (unless HAMECHO_HUGE_PAGES=off),
    # and recorded in each row. No compilation cache: a case's process peak includes its compilation.
    return {**with_huge_pages(os.environ), COMPILE_CACHE_ENV: "off"}


def run_case_subprocess(algo, model, batch, length, reps, core_dtype, timeout, block_chunk=BLOCK_CHUNK,
                        norm="batch", stream_chunk=STREAM_CHUNK) -> dict:
    """Run one case in a fresh interpreter; a failure or timeout becomes a row with ``skipped``."""
    case = json.dumps({"algo": algo, "model": model, "batch": batch, "length": length, "reps": reps,
                       "core_dtype": core_dtype, "block_chunk": block_chunk, "norm": norm,
                       "stream_chunk": stream_chunk})
    row = {"algo": algo, "model": model, "batch": batch, "length": length}
    try:
        done = subprocess.run([sys.executable, "-m", "hamecho.tools.bench", "--run-case", case], capture_output=True,
                              text=True, timeout=timeout, env=_child_env())
    except subprocess.TimeoutExpired:
        return {**row, "skipped": f"timed out after {timeout:.0f} s"}
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        reason = "killed (out of memory?)" if done.returncode in (-9, 137) else f"failed: {tail}"
        return {**row, "skipped": reason}
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- the grid ----------------------------------------------------------------------------------------

def estimated_bptt_bytes(model: str, batch: int, length: int) -> float:
    """Rough size of what BPTT stores (for skipping cases that cannot fit; calibrated by measurement)."""
    per_step_sample = 6 * (SHAPE["hidden"] * 4 * 14 + 2 * SHAPE["state"] * 8 * (6 if model == "linear" else 10))
    return per_step_sample * batch * length


def _same_case(row: dict, case: dict) -> bool:
    """``row`` measured ``case``; a row without a norm (recorded before the option) had norm "batch"."""
    return all(row.get(k) == v for k, v in case.items()) and row.get("norm", "batch") == case.get("norm", "batch")


def run_grid(algos, models, lengths, batches, reps=5, core_dtype="auto", timeout=1800.0,
             memory_limit_gib=DEFAULT_MEMORY_LIMIT_GIB, progress=None, previous=(), on_row=None,
             rounds=5, block_chunk=BLOCK_CHUNK, norm=None, stream_chunk=STREAM_CHUNK) -> list[dict]:
    """Every case of the grid: its memory in a fresh subprocess each, then the time of the cases of each
    (model, batch, L) interleaved over ``rounds`` rounds in one subprocess (module docstring; ``rounds=0``:
    no interleaved timing, the rows keep the fresh processes' step times).

    ``previous``: rows of an earlier run; a measured row of the same case (same reps, rounds and core
    precision) is reused, and a group whose rows are all reused is not timed again. ``on_row(rows)`` is
    called after each measurement with the rows so far (to write partial outputs). ``norm``: None chooses
    by :func:`norm_for`.
    """
    norm = norm_for(algos, norm)
    # norm "batch" is left out of a case's keys: rows recorded before the norm option match it
    cases = [{"algo": algo, "model": model, "batch": batch, "length": length, "reps": reps, "core_dtype": core_dtype,
              **_chunk_keys(algo, block_chunk, stream_chunk), **({"norm": norm} if norm != "batch" else {})}
             for batch in batches for length in lengths for model in models for algo in algos]
    rows: dict[int, dict] = {}
    for i, case in enumerate(cases):
        algo, model, batch, length = case["algo"], case["model"], case["batch"], case["length"]
        reuse = next((r for r in previous if "skipped" not in r and _same_case(r, case)
                      and r.get("rounds", 0) == rounds), None)
        estimate = estimated_bptt_bytes(model, batch, length)
        if reuse is not None:
            row = {**reuse, "reused": True}
        elif algo == "bptt" and estimate > memory_limit_gib * 2**30:
            row = {"algo": algo, "model": model, "batch": batch, "length": length,
                   "skipped": f"BPTT needs ~{estimate / 2**30:.0f} GiB (limit {memory_limit_gib:g})"}
        else:
            row = run_case_subprocess(algo, model, batch, length, reps, core_dtype, timeout, block_chunk, norm,
                                      stream_chunk)
            if "skipped" not in row:
                row = {**row, "fresh_step_time_s": row["step_time_s"], "timing": "fresh", "rounds": 0}
        rows[i] = row
        if progress:
            progress(row)
        if on_row:
            on_row(_finished(rows))
    if rounds:
        groups: dict[tuple, list[int]] = {}
        for i, case in enumerate(cases):
            if "skipped" not in rows[i] and not rows[i].get("reused"):
                groups.setdefault((case["batch"], case["length"], case["model"]), []).append(i)
        for (batch, length, model), members in groups.items():
            timed = run_group_subprocess([cases[i]["algo"] for i in members], model, batch, length, rounds,
                                         core_dtype, timeout, block_chunk, norm, stream_chunk)
            for i in members:
                rows[i] = with_group_timing(rows[i], timed, rounds)
            if on_row:
                on_row(_finished(rows))
    return _finished(rows)


def with_group_timing(row: dict, timed: dict, rounds: int) -> dict:
    """A fresh-process row with its group's interleaved timing (:func:`run_group`) in place of its time."""
    if "skipped" in timed:
        return {**row, "timing_skipped": timed["skipped"]}
    step = timed["steps"][row["algo"]]
    return {**row, "step_time_s": step["spread"]["median"], "step_spread": step["spread"],
            "forward_time_s": timed["forward"]["median"], "forward_spread": timed["forward"],
            "step_over_forward": step["over_forward"], "round_step_times_s": timed["per_round"][row["algo"]],
            "round_forward_times_s": timed["per_round"]["forward"], "machine": timed["machine"],
            "timing": "interleaved", "rounds": rounds}


def _finished(rows: dict[int, dict]) -> list[dict]:
    return [{k: v for k, v in rows[i].items() if k != "reused"} for i in sorted(rows)]


# --- output ------------------------------------------------------------------------------------------

def _ratio(rows, row, key, base_algo="bptt"):
    base = next((r for r in rows if r["algo"] == base_algo and r["model"] == row["model"]
                 and r["batch"] == row["batch"] and r["length"] == row["length"] and "skipped" not in r
                 and r.get("norm", "batch") == row.get("norm", "batch")), None)
    if base is None or "skipped" in row:
        return None
    return time_ratio(row, base) if key == "step_time_s" else row[key] / base[key]


def time_ratio(row: dict, base: dict) -> float:
    """``row``'s step time over ``base``'s: the median of the per-round ratios when both were timed in the
    same interleaved rounds (``hamecho.tools.timing.ratio``), else the ratio of the two times."""
    a, b = row.get("round_step_times_s"), base.get("round_step_times_s")
    if a and b and len(a) == len(b) and row.get("round_forward_times_s") == base.get("round_forward_times_s"):
        return statistics.median(x / y for x, y in zip(a, b))
    return row["step_time_s"] / base["step_time_s"]


def format_markdown(rows: list[dict]) -> str:
    """The rows as a table: step time (interleaved median, range over rounds) and its ratios to BPTT and to the
    forward pass, peak memory and its ratio to BPTT, the targets; a line on the machine first."""
    lines = [machine_line(rows),
             "| model | batch | L | algo | step time (s) | × BPTT | peak memory (GiB) | × BPTT | target "
             "| range (s) | × forward (range) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['model']} | {r['batch']} | {r['length']} | {r['algo']} | skipped: {r['skipped']} "
                         "| | | | | | |")
            continue
        t_ratio, m_ratio = _ratio(rows, r, "step_time_s"), _ratio(rows, r, "peak_mem_bytes")
        target = ""
        if r["algo"] == "rhel" and r["batch"] == 4 and r["length"] == 17984 and t_ratio is not None:
            target = f"time ≤ 1.0×: {'met' if t_ratio <= 1.0 else 'MISSED'}"
        if r["algo"].startswith("rhel") and r["batch"] == 4 and r["length"] == 49920 and m_ratio is not None:
            target = f"memory ≤ 0.25×: {'met' if m_ratio <= 0.25 else 'MISSED'}"
        if r["algo"] == "rhel_streaming" and r["batch"] == 4 and r["length"] == 17984:
            target = streaming_time_target(rows, r)
        fmt = lambda v: "" if v is None else f"{v:.2f}"
        spread = r.get("step_spread")
        spread = f"{spread['min']:.3f}–{spread['max']:.3f}" if spread else ""
        forward = r.get("step_over_forward")
        forward = f"{forward['median']:.2f} ({forward['min']:.2f}–{forward['max']:.2f})" if forward else ""
        lines.append(f"| {r['model']} | {r['batch']} | {r['length']} | {r['algo']} | {r['step_time_s']:.3f} | "
                     f"{fmt(t_ratio)} | {r['peak_mem_bytes'] / 2**30:.2f} | {fmt(m_ratio)} | {target} | {spread} "
                     f"| {forward} |")
    return "\n".join(lines)


def machine_line(rows: list[dict]) -> str:
    """What the timings depend on besides the code: the machine state the interleaved rows recorded."""
    states = [r["machine"] for r in rows if r.get("machine")]
    timed = {r.get("timing", "fresh") for r in rows if "skipped" not in r}
    how = ("step times interleaved over rounds in one process per (model, batch, L); peaks from one fresh "
           "process per case" if timed == {"interleaved"} else "step times and peaks from one fresh process per case")
    if not states:
        pages = {r.get("huge_pages", "?") for r in rows if "skipped" not in r}
        return f"Measured: {how}; huge pages {', '.join(sorted(pages))}.\n"
    loads = [s["load"][0] for s in states if s.get("load")]
    load = f"load average {min(loads):.1f}–{max(loads):.1f}" if loads else "load unknown"
    pages = ", ".join(sorted({str(s.get("huge_pages")) for s in states}))
    return (f"Measured: {how}; {states[0].get('cpus')} cores, {load}, huge pages {pages} "
            f"(kernel THP mode {states[0].get('thp')}).\n")


def streaming_time_target(rows: list[dict], row: dict) -> str:
    """Issue #14's speed target for a rhel_streaming row: ≤ 1.0× the plain RHEL step and ≤ 1.0× BPTT's."""
    parts = []
    for base_algo in ("rhel", "bptt"):
        base = next((r for r in rows if r["algo"] == base_algo and "skipped" not in r
                     and all(r.get(k) == row.get(k) for k in ("model", "batch", "length", "norm"))), None)
        if base is not None:
            ratio = time_ratio(row, base)
            parts.append(f"{ratio:.2f}× {base_algo} {'met' if ratio <= 1.0 else 'MISSED'}")
    return "time ≤ 1.0× rhel and bptt: " + ", ".join(parts) if parts else ""


def format_side_by_side(rows: list[dict]) -> str:
    """One line per (model, batch, L): each algorithm's step time and peak memory, and RHEL's ratios to BPTT."""
    measured = {(r["model"], r["batch"], r["length"], r["algo"]): r for r in rows if "skipped" not in r}
    algos = [a for a in ALGOS if any(key[3] == a for key in measured)]
    if "bptt" not in algos:
        return ""
    head = (["model", "batch", "L"] + [f"{a} s" for a in algos] + [f"{a} GiB" for a in algos]
            + [f"{a} / bptt time" for a in algos if a.startswith("rhel")]
            + [f"{a} / bptt memory" for a in algos if a.startswith("rhel")])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    def cell(r, key, scale):
        return "–" if r is None else f"{r[key] * scale:.{3 if scale == 1 else 2}f}"

    def ratio(r, base, key):
        return "–" if r is None or base is None else f"{r[key] / base[key]:.2f}"

    for model, batch, length in sorted({k[:3] for k in measured}, key=lambda k: (k[1], k[2], k[0])):
        row = {a: measured.get((model, batch, length, a)) for a in algos}
        base = row["bptt"]
        cells = ([model, str(batch), f"{length:,}"] + [cell(row[a], "step_time_s", 1) for a in algos]
                 + [cell(row[a], "peak_mem_bytes", 2.0**-30) for a in algos]
                 + ["–" if row[a] is None or base is None else f"{time_ratio(row[a], base):.2f}"
                    for a in algos if a.startswith("rhel")]
                 + [ratio(row[a], base, "peak_mem_bytes") for a in algos if a.startswith("rhel")])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_outputs(rows: list[dict], out: Path) -> list[Path]:
    """bench.md, bench.csv, bench.json and bench.png (time and memory against L, log-log)."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "bench.md", out / "bench.csv", out / "bench.json"]
    side_by_side = format_side_by_side(rows)
    written[0].write_text(format_markdown(rows) + "\n" + (f"\n{side_by_side}\n" if side_by_side else ""),
                          encoding="utf-8")
    fields = ["algo", "model", "batch", "length", "step_time_s", "peak_mem_bytes", "process_peak_bytes",
              "baseline_bytes", "fresh_step_time_s", "forward_time_s", "timing", "rounds", "huge_pages", "skipped"]
    with open(written[1], "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    atomic_write_bytes(written[2], (json.dumps(rows, indent=1) + "\n").encode())  # what --resume reads
    measured = [r for r in rows if "skipped" not in r]
    if measured and len({r["length"] for r in measured}) > 1:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        styles = {"rhel": "o-", "bptt": "s--", "bptt_ckpt": "^:", "rhel_chunked": "P-", "bptt_chunked": "X--",
                  "rhel_recompute": "D-", "bptt_recompute": "v--", "rhel_streaming": "*-"}
        for ax, key, label, scale in ((axes[0], "step_time_s", "step time (s)", 1.0),
                                      (axes[1], "peak_mem_bytes", "peak memory (GiB)", 2.0**-30)):
            for (algo, model, batch) in sorted({(r["algo"], r["model"], r["batch"]) for r in measured}):
                sel = sorted((r for r in measured if (r["algo"], r["model"], r["batch"]) == (algo, model, batch)),
                             key=lambda r: r["length"])
                ax.plot([r["length"] for r in sel], [r[key] * scale for r in sel], styles[algo],
                        label=f"{algo} {model} b{batch}")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("sequence length L")
            ax.set_ylabel(label)
            ax.grid(True, which="both", alpha=0.3)
        axes[1].legend(fontsize=7, ncol=2)
        fig.suptitle("Training step, 6-block HSSM (hidden 64, state 16), one process per case")
        fig.tight_layout()
        fig.savefig(out / "bench.png", dpi=120)
        plt.close(fig)
        written.append(out / "bench.png")
    return written


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--run-case":
        case = json.loads(sys.argv[2])
        print(json.dumps(run_case(**case)))
    elif len(sys.argv) == 3 and sys.argv[1] == "--run-group":
        print(json.dumps(run_group(**json.loads(sys.argv[2]))))
    else:
        print("usage: hamecho bench ... (this module's entry point is for one benchmark case or group)",
              file=sys.stderr)
        sys.exit(2)
