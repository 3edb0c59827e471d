"""How long the first training step of a new process takes, with an empty and with a warm compilation cache.

    python benchmarks/performance/first_step.py --out benchmarks/performance/results/first_step.json

For each model (the paper's long-sequence shape: 6 blocks, hidden 64, state 16, L = 17,984, batch 4,
float32 model, float64 cores, norm "batch", RHEL), three fresh processes run one after the other on one
cache folder: the first finds it empty (cold: trace, compile, run), the next two find it warm (trace,
load, run). Each reports, in wall and processor seconds: importing hamecho and building the model and
data, tracing and lowering the jitted step, compiling it or loading it from the cache, the first step
(what a user waits for: the three together) and a second step (the step itself). ``--no-cache`` gives
every process an empty folder of its own (what the code did before the cache).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def child(hru: str, length: int) -> dict:
    now = lambda: (time.perf_counter(), time.process_time())
    t0 = now()
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    import hamecho as he
    from hamecho.core.choices import Choices
    from hamecho.nn.api import _train_step
    from hamecho.training import optimizer_for

    try:
        from hamecho import runtime
    except ImportError:  # code from before the cache (PYTHONPATH=an older checkout's src): compiles every time
        runtime = None
    if runtime is not None:
        runtime.enable_compilation_cache()
    key_model, key_x, key_y = jax.random.split(jax.random.PRNGKey(0), 3)
    model = he.HSSM(in_dim=6, out_dim=5, hidden=64, state=16, blocks=6, hru=hru, dtype=jnp.float32, key=key_model)
    x = jax.random.normal(key_x, (4, length, 6), jnp.float32)
    y = jax.random.randint(key_y, (4,), 0, 5)
    optimizer = optimizer_for(1e-3)
    opt_state = he.init_optimizer(optimizer, model)
    args = (model, opt_state, x, y, optimizer, Choices(), jax.random.PRNGKey(1))
    jax.block_until_ready(args[:4])
    t1 = now()
    lowered = _train_step.lower(*args)
    t2 = now()
    compiled = lowered.compile()
    t3 = now()
    jax.block_until_ready(compiled(*args))
    t4 = now()
    jax.block_until_ready(compiled(*args))
    t5 = now()
    span = lambda a, b: {"wall_s": round(b[0] - a[0], 3), "cpu_s": round(b[1] - a[1], 3)}
    return {"setup": span(t0, t1), "trace_lower": span(t1, t2), "compile_or_load": span(t2, t3),
            "first_step": span(t1, t4), "run_first": span(t3, t4), "second_step": span(t4, t5),
            "load": os.getloadavg()[0]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hru", nargs="+", default=["linear", "nonlinear"])
    parser.add_argument("--length", type=int, default=17984)
    parser.add_argument("--warm", type=int, default=2, help="warm processes after the cold one")
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.length)))
        return 0
    results = []
    for hru in args.hru:
        with tempfile.TemporaryDirectory() as folder:
            for run in range(1 + args.warm):
                cache = tempfile.mkdtemp(dir=folder) if args.no_cache else folder
                env = {**os.environ, "HAMECHO_COMPILE_CACHE": cache}
                done = subprocess.run([sys.executable, __file__, "--child", hru, "--length", str(args.length)],
                                      capture_output=True, text=True, env=env, check=True)
                row = {"hru": hru, "run": "cold" if run == 0 or args.no_cache else "warm",
                       **json.loads(done.stdout.strip().splitlines()[-1])}
                results.append(row)
                print(f"{hru:9} {row['run']:4}: first step {row['first_step']['wall_s']:6.2f} s "
                      f"(trace {row['trace_lower']['wall_s']:.2f}, "
                      f"compile/load {row['compile_or_load']['wall_s']:.2f}, "
                      f"run {row['run_first']['wall_s']:.2f}); second step {row['second_step']['wall_s']:.2f} s; "
                      f"cpu: first {row['first_step']['cpu_s']:.2f}, second {row['second_step']['cpu_s']:.2f}; "
                      f"load {row['load']:.1f}", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"command": " ".join(sys.argv), "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
