"""Where one training step spends its time: JAX's profiler, each compiled kernel attributed to a part of the model.

    python benchmarks/performance/breakdown.py --hru nonlinear --norm batch --length 1000 \
        --out benchmarks/performance/results/breakdown-nonlinear-batch-L1000.json

Compiles the jitted training step (``hamecho.train_step``: value and gradient and the Adam update) of the
paper's long-sequence model (6 blocks, hidden 64, state 16, batch 4, float32 model, float64 cores), runs
it twice, then runs ``--steps`` steps under ``jax.profiler.trace``. Every kernel XLA ran (one profiler event
per kernel call: inside a scan, one per call per time step) is attributed, by the name scope its HLO
instruction carries, to the part of the model that issued it:

    core_forward   the cores' forward scans (under BPTT their backward too: "core_forward, backward")
    core_echo      RHEL's ±ε echoes (the custom VJP's backward scans)
    core_rebuild   Streaming's free echo, rebuilding each chunk's positions (Streaming only)
    core_cast      float32 ↔ float64 casts around the cores (drives in, positions and gradients out)
    hru_linear     B·u and C·φ + D⊙u;   norm   BatchNorm / LayerNorm;   gelu_glu   GELU, GLU, dropout, residual
    dropout_masks  drawing the dropout masks;   loss   the head's loss;   optimizer   the Adam update
    other          the encoder, the head's mean over time, copies XLA inserted

and to its direction: forward (issued under ``jvp``) or backward (``transpose``). A scan's own control (the
loop's condition and the hand-over between iterations) is reported as "loop control". Times are exclusive
(a kernel's time without the kernels it contains), summed over threads, per step. The profiler's own cost
per event (~a microsecond per kernel call) inflates the many tiny kernels inside the scans, so the shares
are to be read together with the interleaved timings (``--interleaved``: the forward pass, the value and
gradient, the training step and the cores alone, timed round after round in this process).

Reading the trace back holds every event in memory: at L = 17,984 (about 3 million events per step) that
took over 10 GiB, so profile a shorter sequence (``--length 1000``); everything but the optimiser and
the loss grows linearly in L, so the shares carry over.
"""
from __future__ import annotations

import argparse
import collections
import glob
import json
import re
import sys
import tempfile
import time
from pathlib import Path

SCOPES = ("optimizer", "core_echo", "core_rebuild", "core_forward", "core_cast", "dropout_masks", "norm", "hru_linear",
          "gelu_glu", "loss")


def instruction_scopes(hlo_text: str) -> dict[str, str]:
    """HLO instruction name → the op_name (name stack) of its metadata."""
    scopes = {}
    for match in re.finditer(r"^\s*(?:ROOT )?%?([\w.\-]+) = [^\n]*?metadata=\{[^}]*op_name=\"([^\"]*)\"", hlo_text,
                             re.MULTILINE):
        scopes[match.group(1)] = match.group(2)
    return scopes


def opcode_of(hlo_text: str) -> dict[str, str]:
    """HLO instruction name → its opcode (``while``, ``fusion``, ``copy``, …)."""
    codes = {}
    for match in re.finditer(r"^\s*(?:ROOT )?%?([\w.\-]+) = \S+(?: \S+)*? ([\w\-]+)\(", hlo_text, re.MULTILINE):
        codes.setdefault(match.group(1), match.group(2))
    return codes


def category(op_name: str) -> str:
    scope = next((s for s in SCOPES if re.search(rf"(?<![\w]){s}(?![\w])", op_name)), "other")
    return f"{scope}, {'backward' if 'transpose(' in op_name else 'forward'}"


def exclusive_times(line_events) -> list[tuple[str, float]]:
    """(hlo_op, exclusive seconds) for the events of one thread: nested events' time taken off their parent."""
    events = sorted(((e.start_ns, e.duration_ns, e.name) for e in line_events), key=lambda t: (t[0], -t[1]))
    out, stack = [], []  # stack of [end, name, exclusive]
    for start, duration, name in events:
        while stack and stack[-1][0] <= start:
            end, n, excl = stack.pop()
            out.append((n, excl))
        if stack:
            stack[-1][2] -= duration
        stack.append([start + duration, name, float(duration)])
    out.extend((n, excl) for _, n, excl in stack)
    return [(n, t * 1e-9) for n, t in out]


def profile_step(run, hlo_text: str, module: str, steps: int) -> dict:
    import jax

    scopes, codes = instruction_scopes(hlo_text), opcode_of(hlo_text)
    with tempfile.TemporaryDirectory() as folder:
        with jax.profiler.trace(folder):
            start = time.perf_counter()
            for _ in range(steps):
                jax.block_until_ready(run())
            wall = (time.perf_counter() - start) / steps
        data = jax.profiler.ProfileData.from_file(glob.glob(f"{folder}/**/*.xplane.pb", recursive=True)[0])
    totals: dict[str, float] = collections.defaultdict(float)
    calls: dict[str, int] = collections.defaultdict(int)
    kernels: dict[str, list] = {}
    for plane in data.planes:
        for line in plane.lines:
            ours = [e for e in line.events if dict(e.stats).get("hlo_module") == module]
            for name, seconds in exclusive_times(ours):
                label = category(scopes.get(name, ""))
                if codes.get(name) in ("while", "conditional", "call"):
                    label = f"loop control ({label})"
                totals[label] += seconds / steps
                calls[label] += 1
                kernel = kernels.setdefault(name, [label, 0, 0.0])
                kernel[1] += 1
                kernel[2] += seconds / steps
    top = sorted(kernels.items(), key=lambda kv: -kv[1][2])[:40]
    return {"wall_s": wall, "kernel_s": sum(totals.values()),
            "parts": sorted(({"part": k, "seconds": v, "calls_per_step": calls[k] // steps} for k, v in totals.items()),
                            key=lambda r: -r["seconds"]),
            "top_kernels": [{"kernel": name, "part": part, "calls_per_step": n // steps, "seconds": sec,
                             "op_name": scopes.get(name, "")} for name, (part, n, sec) in top]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hru", default="nonlinear", choices=("linear", "nonlinear"))
    parser.add_argument("--norm", default="batch", choices=("batch", "layer"))
    parser.add_argument("--algo", default="rhel", choices=("rhel", "bptt"))
    parser.add_argument("--memory", default="none", choices=("none", "streaming"))
    parser.add_argument("--length", type=int, default=17984)
    parser.add_argument("--steps", type=int, default=1, help="profiled steps (times are per step)")
    parser.add_argument("--interleaved", type=int, default=0, metavar="ROUNDS",
                        help="also time forward, value and gradient, step and the cores alone over ROUNDS rounds")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    import equinox as eqx
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    import hamecho as he
    from hamecho.core.choices import Choices
    from hamecho.nn.api import _train_step, _value_and_grad, loss_and_statistics
    from hamecho.tools.timing import interleave, machine_state, ratio, spread
    from hamecho.training import optimizer_for

    key_model, key_x, key_y = jax.random.split(jax.random.PRNGKey(0), 3)
    model = he.HSSM(in_dim=6, out_dim=5, hidden=64, state=16, blocks=6, hru=args.hru, dtype=jnp.float32,
                    norm=args.norm, key=key_model)
    x = jax.random.normal(key_x, (4, args.length, 6), jnp.float32)
    y = jax.random.randint(key_y, (4,), 0, 5)
    optimizer = optimizer_for(1e-3)
    opt_state = he.init_optimizer(optimizer, model)
    key = jax.random.PRNGKey(1)
    choices = Choices(gradient=he.RHEL() if args.algo == "rhel" else he.BPTT(),
                      memory=he.Streaming() if args.memory == "streaming" else None)
    step_args = (model, opt_state, x, y, optimizer, choices, key)
    compiled = _train_step.lower(*step_args).compile()
    step = lambda: compiled(*step_args)
    for _ in range(2):
        jax.block_until_ready(step())
    result = {"hru": args.hru, "norm": args.norm, "algo": args.algo, "memory": args.memory, "length": args.length,
              "batch": 4,
              "machine": machine_state(), "command": " ".join(sys.argv)}
    result["profile"] = profile_step(step, compiled.compiled.as_text(), "jit__train_step", args.steps)
    if args.interleaved:
        forward = eqx.filter_jit(lambda m, x, y, c, k: loss_and_statistics(m, x, y, c, k)[0])
        cases = {"forward": lambda: forward(model, x, y, choices, key),
                 "value_and_grad": lambda: _value_and_grad(model, x, y, choices, key),
                 "train_step": step}
        times = interleave(cases, rounds=args.interleaved)
        result["interleaved"] = {name: spread(t) for name, t in times.items()}
        result["ratios"] = {f"{a}/forward": ratio(times, a, "forward") for a in ("value_and_grad", "train_step")}
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    prof = result["profile"]
    print(f"{args.hru} norm={args.norm} {args.algo} L={args.length}: step {prof['wall_s']:.3f} s under the profiler, "
          f"kernels {prof['kernel_s']:.3f} s (summed over threads); load {result['machine']['load']}, "
          f"huge pages {result['machine']['huge_pages']}")
    for part in prof["parts"]:
        print(f"  {part['part']:<40} {part['seconds']:8.3f} s  {100 * part['seconds'] / prof['kernel_s']:5.1f} %  "
              f"{part['calls_per_step']:>9} calls")
    for name, r in result.get("ratios", {}).items():
        print(f"  {name}: {r['median']:.2f} (range {r['min']:.2f}–{r['max']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
