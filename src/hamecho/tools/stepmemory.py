"""Peak memory of one training step per memory strategy, each in its own process (issue #14).

    from hamecho.tools.stepmemory import measure, format_table
    rows = [measure(method, 30_000) for method in METHODS]      # BPTT, BPTT + TimeChunks, RHEL + Streaming
    print(format_table(rows))

What the main job (``hamecho run``) shows after its training part, and what
``benchmarks/streaming/memory.py`` measures over a grid of lengths. One case: a fresh interpreter
builds the model of ``hamecho bench`` (6 blocks, hidden 64, state 16, float32 parameters and
activations, float64 cores, dropout on) with ``norm="layer"`` for every method (streaming needs it; the
others get it so that the comparison is of the memory strategy alone), a random batch of 4 sequences
of 6 channels (written on the device chunk by chunk into its one buffer, :func:`make_input`), and runs
``steps`` Adam training steps (``hamecho.train_step``). Recorded: the whole process's peak resident set
size (VmHWM: Python, JAX, compilation, the data and the steps; not ``ru_maxrss``, which a child
inherits from a big parent), the first step's time
(compilation included) and, with more than one step, the median time of the others.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

SHAPE = {"blocks": 6, "hidden": 64, "state": 16, "in_dim": 6, "classes": 5, "batch": 4}
METHODS = ("bptt", "bptt_chunked", "rhel_streaming")
ALL_METHODS = ("rhel", "bptt", "bptt_chunked", "rhel_chunked", "rhel_streaming")
TIME_CHUNK = 1024   # TimeChunks of the *_chunked methods (hamecho bench's BLOCK_CHUNK)
STREAM_CHUNK = 512  # Streaming's chunk (its default)
LABELS = {"rhel": "RHEL (all activations)", "bptt": "BPTT (all activations)",
          "bptt_chunked": f"BPTT, TimeChunks({TIME_CHUNK})", "rhel_chunked": f"RHEL, TimeChunks({TIME_CHUNK})",
          "rhel_streaming": "RHEL, Streaming({chunk})"}


def choices(method: str, chunk: int = STREAM_CHUNK) -> dict:
    """The ``gradient=``/``memory=`` keywords of ``hamecho.train_step`` for ``method`` (one of ALL_METHODS)."""
    import hamecho as he

    if method not in ALL_METHODS:
        raise ValueError(f"method must be one of {', '.join(ALL_METHODS)}; got {method!r}")
    gradient = he.BPTT() if method.startswith("bptt") else he.RHEL()
    memory = {"": None, "chunked": he.TimeChunks(TIME_CHUNK), "streaming": he.Streaming(chunk)}
    return dict(gradient=gradient, memory=memory[method.partition("_")[2]])


def input_bytes(length: int, shape: dict | None = None) -> int:
    """The raw input x (batch, L, in_dim) float32."""
    s = {**SHAPE, **(shape or {})}
    return s["batch"] * length * s["in_dim"] * 4


def build(length: int, hru: str = "linear", norm: str = "layer", seed: int = 0, shape: dict | None = None):
    """(model, x, y): the HSSM (``shape`` overrides SHAPE), x (batch, L, in_dim) float32 ~ N(0, 1), labels."""
    import jax
    import jax.numpy as jnp

    import hamecho as he

    s = {**SHAPE, **(shape or {})}
    model = he.HSSM(in_dim=s["in_dim"], out_dim=s["classes"], hidden=s["hidden"], state=s["state"],
                    blocks=s["blocks"], hru=hru, norm=norm, dtype=jnp.float32, key=jax.random.PRNGKey(seed))
    x = make_input(jax.random.PRNGKey(seed + 1), (s["batch"], length, s["in_dim"]))
    y = jax.random.randint(jax.random.PRNGKey(seed + 2), (s["batch"],), 0, s["classes"])
    return model, x, y


def make_input(key, shape: tuple[int, int, int], chunk: int = 10_000):
    """x of ``shape`` (batch, length, in_dim) float32 ~ N(0, 1), generated in place chunk by chunk (a NumPy
    array copied to the device measured 1.8× x of resident memory on the way, a one-shot
    ``jax.random.normal`` 2×)."""
    from functools import partial

    import jax
    import jax.numpy as jnp

    @partial(jax.jit, static_argnums=(1, 2))
    def make(key, shape, chunk):
        n_full, rest = divmod(shape[1], chunk)

        def body(i, x):
            part = jax.random.normal(jax.random.fold_in(key, i), (shape[0], chunk, shape[2]), jnp.float32)
            return jax.lax.dynamic_update_slice_in_dim(x, part, i * chunk, axis=1)

        x = jax.lax.fori_loop(0, n_full, body, jnp.zeros(shape, jnp.float32))
        if rest:
            part = jax.random.normal(jax.random.fold_in(key, n_full), (shape[0], rest, shape[2]), jnp.float32)
            x = jax.lax.dynamic_update_slice_in_dim(x, part, n_full * chunk, axis=1)
        return x

    return make(key, tuple(shape), min(chunk, shape[1]))


def run_here(method: str, length: int, *, steps: int = 1, chunk: int = STREAM_CHUNK, hru: str = "linear",
             shape: dict | None = None) -> dict:
    """One case in this process (what the child of :func:`measure` runs); its row."""
    import jax
    import optax

    import hamecho as he

    from ..runtime import huge_pages_state
    from .bench import process_peak_rss

    jax.config.update("jax_enable_x64", True)   # float64 cores, float32 model: the CLI default
    model, x, y = build(length, hru=hru, shape=shape)
    jax.block_until_ready(x)
    optimizer = optax.adam(1e-3)
    opt_state = he.init_optimizer(optimizer, model)
    kwargs = choices(method, chunk)
    key = jax.random.PRNGKey(1)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        model, opt_state, loss = he.train_step(model, opt_state, x, y, optimizer, key=key, **kwargs)
        jax.block_until_ready(loss)
        times.append(time.perf_counter() - start)
    row = {"method": method, "length": length, "steps": steps, "hru": hru,
           "chunk": chunk if method == "rhel_streaming" else None, "input_bytes": input_bytes(length, shape),
           "process_peak_bytes": process_peak_rss(),
           "first_step_s": times[0], "loss": float(loss), "huge_pages": huge_pages_state()}
    if shape:
        row["shape"] = dict(shape)
    if steps > 1:
        row["step_time_s"] = sorted(times[1:])[(steps - 1) // 2]
    return row


def measure(method: str, length: int, *, steps: int = 1, chunk: int = STREAM_CHUNK, hru: str = "linear",
            shape: dict | None = None, timeout: float = 3600.0) -> dict:
    """One case in a fresh interpreter (so that its peak is its own); a failure becomes a row with ``skipped``."""
    case = {"method": method, "length": length, "steps": steps, "chunk": chunk, "hru": hru, "shape": shape}
    choices(method)   # an unknown method fails here, not in the child
    try:
        done = subprocess.run([sys.executable, "-m", "hamecho.tools.stepmemory", json.dumps(case)],
                              capture_output=True, text=True, timeout=timeout, env=child_env())
    except subprocess.TimeoutExpired:
        return {"method": method, "length": length, "skipped": f"timed out after {timeout:.0f} s"}
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        reason = "killed (out of memory?)" if done.returncode in (-9, 137) else f"failed: {tail}"
        return {"method": method, "length": length, "skipped": reason}
    return json.loads(done.stdout.strip().splitlines()[-1])


def child_env() -> dict:
    """A case's environment: huge pages for malloc as the ``hamecho`` command has them (unless
    ``HAMECHO_HUGE_PAGES=off``), no compilation cache (the process peak includes compiling the step)."""
    from ..runtime import COMPILE_CACHE_ENV, with_huge_pages

    return {**with_huge_pages(os.environ), COMPILE_CACHE_ENV: "off"}


def label(row: dict) -> str:
    return LABELS[row["method"]].format(chunk=row.get("chunk"))


def format_table(rows: list[dict]) -> str:
    """Markdown: per method the whole-process peak, its ratio to BPTT's (all activations, or the first row's
    method where BPTT is absent), and the first step's time (compilation included)."""
    base = next((r for r in rows if r["method"] == "bptt" and "skipped" not in r),
                next((r for r in rows if "skipped" not in r), None))
    lines = [f"| method | peak RSS of the process (GiB) | × {label(base) if base else '–'} | first step, "
             "compilation included (s) |", "|---|---|---|---|"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {LABELS[r['method']].format(chunk='')} | skipped: {r['skipped']} | | |")
            continue
        ratio = r["process_peak_bytes"] / base["process_peak_bytes"]
        lines.append(f"| {label(r)} | {r['process_peak_bytes'] / 2**30:.3f} | {ratio:.2f} | {r['first_step_s']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m hamecho.tools.stepmemory CASE_JSON (one case; see hamecho.tools.stepmemory)",
              file=sys.stderr)
        sys.exit(2)
    print(json.dumps(run_here(**json.loads(sys.argv[1]))))
