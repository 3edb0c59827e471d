"""Time per training step and whole-process peak memory against L, one process per case (issue #25, sizing).

    python benchmarks/longrange/sizing.py --lengths 1000 10000 100000 1000000 \
        --methods streaming rhel bptt bptt_chunks --out runs/longrange/sizing.jsonl

Each case is a fresh interpreter (``--case``) that does what a long-range training run does per step: draws a
batch of the generated task at L (``hamecho.data.generated``), and runs ``he.train_step`` (Adam) with the method's
choices, float64 cores and a float32 model (x64 on, as ``hamecho train``). The first step (compilation) is timed
apart; then ``--reps`` steps on fresh batches, median. The peak is the whole process's VmHWM at the end
(``hamecho.tools.bench.read_status_bytes``): the runtime, compilation, the data and the steps. A case whose peak a
line through the method's measured peaks (in L) puts above ``--limit-gib`` is not started and is written as
"does not fit: needs ≈ X GiB (estimate)". Rows are JSON lines, appended as they finish; a rerun skips cases
already in ``--out``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from hamecho.tools.longrange import METHODS, method_choices


def run_case(case: dict) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np
    import optax

    import hamecho as he
    from hamecho.data.generated import generated
    from hamecho.tools.bench import read_status_bytes

    length, batch = case["length"], case["batch"]
    source = generated(case["task"], length=length, sizes=(10**6, 0, 0), seed=0, **case.get("task_params", {}))
    model = he.HSSM(in_dim=source.channels, out_dim=source.out_dim, hidden=case["hidden"], state=case["state"],
                    blocks=case["blocks"], hru=case["hru"], norm="layer", task=source.task,
                    output_step=source.output_step, dtype=jnp.float32, key=jax.random.PRNGKey(0),
                    **case.get("model_params", {}))
    choices = method_choices(case["method"], case["chunk"])
    optimizer = optax.adam(1e-3)
    opt_state = he.init_optimizer(optimizer, model)
    times, data_times = [], []
    for step in range(1 + case["reps"]):
        t0 = time.perf_counter()
        x, y = source.batch("train", np.arange(step * batch, (step + 1) * batch))
        x, y = jnp.asarray(x), jnp.asarray(y)
        t1 = time.perf_counter()
        model, opt_state, loss = he.train_step(model, opt_state, x, y, optimizer, **choices)
        loss = float(loss)
        times.append(time.perf_counter() - t1)
        data_times.append(t1 - t0)
    return {**case, "first_step_s": times[0], "step_s": statistics.median(times[1:]), "step_s_all": times[1:],
            "data_s": statistics.median(data_times), "peak_bytes": read_status_bytes("VmHWM"), "loss": loss}


def estimated_peak(rows: list[dict], method: str, length: int) -> float | None:
    """A line through the method's measured peaks against L (the two longest), evaluated at ``length``."""
    measured = sorted((r["length"], r["peak_bytes"]) for r in rows if r["method"] == method and "peak_bytes" in r)
    if len(measured) < 2:
        return None
    (l0, p0), (l1, p1) = measured[-2:]
    slope = (p1 - p0) / (l1 - l0) if l1 != l0 else 0.0
    return p1 + slope * (length - l1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", help=argparse.SUPPRESS)
    p.add_argument("--lengths", nargs="+", type=int, default=[1000, 10000, 100000, 1000000])
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--task", default="first5")
    p.add_argument("--task-params", default="{}")
    p.add_argument("--model-params", default="{}", help='JSON, e.g. \'{"periods": [2.5, 100000]}\'')
    p.add_argument("--hidden", type=int, default=16)
    p.add_argument("--state", type=int, default=16)
    p.add_argument("--blocks", type=int, default=2)
    p.add_argument("--hru", default="linear")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--chunk", type=int, default=512)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--limit-gib", type=float, default=16.0)
    p.add_argument("--timeout", type=float, default=3600.0)
    p.add_argument("--out", type=Path, default=Path("runs/longrange/sizing.jsonl"))
    args = p.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))), flush=True)
        return 0
    rows = [json.loads(line) for line in args.out.read_text().splitlines()] if args.out.exists() else []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for length in args.lengths:
        for method in args.methods:
            case = {"task": args.task, "task_params": json.loads(args.task_params),
                    "model_params": json.loads(args.model_params), "hidden": args.hidden, "state": args.state,
                    "blocks": args.blocks, "hru": args.hru, "batch": args.batch, "chunk": args.chunk,
                    "reps": args.reps, "method": method, "length": length}
            if any(all(r.get(k) == v for k, v in case.items()) for r in rows):
                continue
            estimate = estimated_peak(rows, method, length)
            if estimate is not None and estimate > args.limit_gib * 2**30:
                row = {**case, "skipped": f"does not fit: needs ≈ {estimate / 2**30:.1f} GiB (estimate)"}
            else:
                try:
                    done = subprocess.run([sys.executable, __file__, "--case", json.dumps(case)], capture_output=True,
                                          text=True, timeout=args.timeout)
                    row = (json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else
                           {**case, "skipped": f"failed ({done.returncode}): "
                                               f"{(done.stderr.strip().splitlines() or ['?'])[-1]}"})
                except subprocess.TimeoutExpired:
                    row = {**case, "skipped": f"timed out after {args.timeout:.0f} s"}
            rows.append(row)
            with args.out.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            shown = (f"{row['step_s']:.3f} s/step, first {row['first_step_s']:.1f} s, peak "
                     f"{row['peak_bytes'] / 2**30:.2f} GiB" if "step_s" in row else row["skipped"])
            print(f"L={length:>8} {method:12s} {shown}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
