"""Why one training step takes different times in different fresh processes: its page faults, counted.

    python benchmarks/performance/page_faults.py --hru linear --norms batch layer --pairs 2 \
        --out benchmarks/performance/results/page_faults-linear.json

For each norm, with glibc's huge pages off and on (``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``), ``--pairs``
fresh processes each compile the paper's long-sequence training step (6 blocks, hidden 64, state 16, batch 4,
L = 17,984, float32 model, float64 cores, RHEL, Adam) and run ``--steps`` steps. Each reports, per step after
the first: wall and processor seconds, the minor page faults (``ru_minflt``: a page of fresh memory touched
for the first time; the kernel zeroes it) and the system (kernel) seconds. The processes run one after the
other in rotating order (batch off, layer off, batch on, layer on, then again), so a busy period of a shared
machine does not fall on one kind only.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path


def child(hru: str, norm: str, steps: int) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    import hamecho as he
    from hamecho.core.choices import Choices
    from hamecho.nn.api import _train_step
    from hamecho.tools.timing import machine_state
    from hamecho.training import optimizer_for

    key_model, key_x, key_y = jax.random.split(jax.random.PRNGKey(0), 3)
    model = he.HSSM(in_dim=6, out_dim=5, hidden=64, state=16, blocks=6, hru=hru, dtype=jnp.float32, norm=norm,
                    key=key_model)
    x = jax.random.normal(key_x, (4, 17984, 6), jnp.float32)
    y = jax.random.randint(key_y, (4,), 0, 5)
    optimizer = optimizer_for(1e-3)
    opt_state = he.init_optimizer(optimizer, model)
    args = (model, opt_state, x, y, optimizer, Choices(gradient=he.RHEL()), jax.random.PRNGKey(1))
    compiled = _train_step.lower(*args).compile()
    rows = []
    for _ in range(1 + steps):
        before = resource.getrusage(resource.RUSAGE_SELF)
        wall, cpu = time.perf_counter(), time.process_time()
        jax.block_until_ready(compiled(*args))
        after = resource.getrusage(resource.RUSAGE_SELF)
        rows.append({"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
                     "sys_s": after.ru_stime - before.ru_stime, "minor_faults": after.ru_minflt - before.ru_minflt})
    steady = rows[1:]
    return {"hru": hru, "norm": norm, "machine": machine_state(), "first_step": rows[0], "steps": steady,
            **{f"median_{k}": statistics.median(r[k] for r in steady)
               for k in ("wall_s", "cpu_s", "sys_s", "minor_faults")}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hru", default="linear", choices=("linear", "nonlinear"))
    parser.add_argument("--norms", nargs="+", default=["batch", "layer"], choices=("batch", "layer"))
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--pages", nargs="+", default=["off", "on"], choices=("off", "on"),
                        help="huge pages off, on or both")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.hru, args.child, args.steps)))
        return 0
    base = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "HAMECHO_HUGE_PAGES")}
    settings = {"off": base, "on": {**base, "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}}
    results = []
    for _ in range(args.pairs):
        for pages in args.pages:
            env = settings[pages]
            for norm in args.norms:
                done = subprocess.run([sys.executable, __file__, "--child", norm, "--hru", args.hru,
                                       "--steps", str(args.steps)], capture_output=True, text=True, env=env,
                                      check=True)
                row = {"huge_pages": pages, **json.loads(done.stdout.strip().splitlines()[-1])}
                results.append(row)
                print(f"{args.hru} norm={norm:5} huge pages {pages:3}: step {row['median_wall_s']:.3f} s "
                      f"(cpu {row['median_cpu_s']:.3f}, kernel {row['median_sys_s']:.3f}), "
                      f"{row['median_minor_faults']:,.0f} page faults per step; load {row['machine']['load'][0]}",
                      flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"command": " ".join(sys.argv), "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
