"""Peak memory of one training step against the sequence length, per method (issue #14, target 2).

    python benchmarks/streaming/memory.py --out benchmarks/streaming/results        # the grid below
    python benchmarks/streaming/memory.py --methods rhel_streaming --lengths 10000000 --steps 1 \\
        --out benchmarks/streaming/results/l1e7                                       # one long case

Each (method, L) runs in a fresh interpreter (``cases.py``: 6 blocks, hidden 64, state 16, batch 4,
float32 model, float64 cores, norm "layer", dropout on) so that its peak resident set size is its own.
Recorded per case:

- ``process_peak_bytes``: the whole process's peak RSS (VmHWM, read after the first step): Python,
  JAX, compilation, the data and the first step — what the issue's target is stated in (rows written
  before 2 December 2026, 11:45 UTC, read it after the peak mark was reset for the timed steps, so
  theirs equals ``step_peak_bytes``: compilation excluded);
- ``step_peak_bytes``: the peak RSS during the timed step(s) only (after the warm-up the compiler's freed
  heap is returned to the OS and the kernel's mark is reset, as ``hamecho bench`` does);
- ``input_bytes``: the raw input x (batch · L · 6 float32), ``step_time_s`` and ``first_step_s``
  (compilation included).

Cases that would not fit (``--limit-gib``, from a linear fit of the same method's measured peaks) are
not run; their peak is *estimated* by that fit (``estimate: true``). Writes memory.json and memory.png
(peak against L, log-log, measured points filled, estimates open).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import cases  # noqa: E402

LENGTHS = (1_000, 10_000, 30_000, 100_000, 1_000_000)
# where each method is measured by default (beyond: estimated); streaming also at 10^7 (--steps 1, separately)
MEASURED_UP_TO = {"rhel_streaming": 10**7, "bptt_chunked": 100_000, "rhel_chunked": 100_000, "rhel": 30_000,
                  "bptt": 30_000}
DEFAULT_METHODS = ("rhel_streaming", "bptt_chunked", "rhel", "bptt")


def run_child(case: dict) -> dict:
    import jax

    from hamecho.tools.bench import process_peak_rss, read_status_bytes, release_freed_memory, reset_peak_rss

    jax.config.update("jax_enable_x64", True)
    model, x, y = cases.build(case["length"], hru=case["hru"])
    jax.block_until_ready(x)
    data_rss = read_status_bytes("VmRSS")
    step, init = cases.training_step(case["method"], case["chunk"])
    opt_state = init(model)
    key = jax.random.PRNGKey(1)
    start = time.perf_counter()
    model, opt_state, loss = step(model, opt_state, x, y, key)
    jax.block_until_ready(loss)
    first = time.perf_counter() - start
    # read before the mark is reset below (VmHWM; ru_maxrss reads the same mark, and a child's also carries
    # its parent's peak over)
    process_peak = process_peak_rss()
    times = []
    if case["steps"] > 1:
        release_freed_memory()
        reset_peak_rss()
        for _ in range(case["steps"] - 1):
            start = time.perf_counter()
            model, opt_state, loss = step(model, opt_state, x, y, key)
            jax.block_until_ready(loss)
            times.append(time.perf_counter() - start)
        process_peak = max(process_peak, process_peak_rss())
    row = {**case, "input_bytes": cases.input_bytes(case["length"]), "process_peak_bytes": int(process_peak),
           "data_rss_bytes": data_rss, "first_step_s": first, "loss": float(loss)}
    if times:
        row["step_time_s"] = sorted(times)[len(times) // 2]
        row["step_peak_bytes"] = int(process_peak_rss())
    return row


def run_case(case: dict, timeout: float) -> dict:
    try:
        done = subprocess.run([sys.executable, __file__, "--child", json.dumps(case)], capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**case, "skipped": f"timed out after {timeout:.0f} s"}
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {**case, "skipped": "killed (out of memory?)" if done.returncode in (-9, 137) else f"failed: {tail}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def estimate(rows: list[dict], method: str, length: int) -> float | None:
    """Peak at ``length`` from a line through the method's two longest measured cases (peak = a + b·L)."""
    measured = sorted((r["length"], r["process_peak_bytes"]) for r in rows
                      if r["method"] == method and "skipped" not in r and not r.get("estimate"))
    if len(measured) < 2:
        return None
    (l0, p0), (l1, p1) = measured[-2:]
    slope = (p1 - p0) / (l1 - l0)
    return p1 + slope * (length - l1)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {"rhel_streaming": ("C0", "RHEL, Streaming"), "bptt_chunked": ("C1", "BPTT, TimeChunks(1024)"),
              "rhel_chunked": ("C4", "RHEL, TimeChunks(1024)"), "rhel": ("C2", "RHEL (all activations)"),
              "bptt": ("C3", "BPTT (all activations)")}
    for method, (color, label) in styles.items():
        mine = sorted((r for r in rows if r["method"] == method and "skipped" not in r), key=lambda r: r["length"])
        if not mine:
            continue
        ax.plot([r["length"] for r in mine], [r["process_peak_bytes"] / 2**30 for r in mine], "-", color=color,
                label=label)
        for r in mine:
            filled = not r.get("estimate")
            ax.plot(r["length"], r["process_peak_bytes"] / 2**30, "o", color=color,
                    markerfacecolor=color if filled else "white")
    lengths = sorted({r["length"] for r in rows})
    ax.plot(lengths, [cases.input_bytes(n) / 2**30 for n in lengths], ":", color="gray", label="raw input x")
    ax.axhline(1.0, color="gray", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("sequence length L")
    for r in rows:   # one step only: its peak is the whole process's, compilation included
        if r.get("steps") == 1 and "skipped" not in r and not r.get("estimate"):
            ax.annotate("whole process,\ncompilation incl.", (r["length"], r["process_peak_bytes"] / 2**30),
                        textcoords="offset points", xytext=(-80, -28), fontsize=7, color="C0")
    ax.set_ylabel("peak resident memory of a step (GiB)")
    ax.set_title("One training step, 6-block HSSM, batch 4, norm layer (open: estimated)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    parser.add_argument("--lengths", nargs="+", type=int, default=list(LENGTHS))
    parser.add_argument("--chunk", type=int, default=cases.STREAM_CHUNK, help="Streaming chunk")
    parser.add_argument("--hru", default="linear", choices=("linear", "nonlinear"))
    parser.add_argument("--steps", type=int, default=2, help="steps per case (the first compiles; 1: only that one)")
    parser.add_argument("--timeout", type=float, default=7200.0)
    parser.add_argument("--all", action="store_true", help="measure every case, ignoring MEASURED_UP_TO")
    parser.add_argument("--out", type=Path, required=False)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_child(json.loads(args.child))))
        return 0
    out = args.out or Path(__file__).parent / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / "memory.json"
    rows = json.loads(path.read_text()) if path.exists() else []
    for length in args.lengths:
        for method in args.methods:
            case = {"method": method, "length": length, "chunk": args.chunk if method == "rhel_streaming" else None,
                    "hru": args.hru, "steps": args.steps}
            rows = [r for r in rows if not (r["method"] == method and r["length"] == length and r["hru"] == args.hru)]
            if not args.all and length > MEASURED_UP_TO.get(method, 0):
                guess = estimate(rows, method, length)
                if guess is not None:
                    rows.append({**case, "estimate": True, "process_peak_bytes": int(guess),
                                 "input_bytes": cases.input_bytes(length),
                                 "method_of_estimate": "line through the two longest measured lengths"})
                continue
            row = run_case(case, args.timeout)
            rows.append(row)
            peak = row.get("process_peak_bytes")
            print(f"{method:>15} L={length:>9,}: " + (row["skipped"] if "skipped" in row else
                  f"process peak {peak / 2**30:.3f} GiB, step peak {row.get('step_peak_bytes', 0) / 2**30:.3f} GiB, "
                  f"step {row.get('step_time_s', row['first_step_s']):.1f} s"), flush=True)
            path.write_text(json.dumps(rows, indent=1) + "\n")
    path.write_text(json.dumps(rows, indent=1) + "\n")
    plot(rows, out / "memory.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
