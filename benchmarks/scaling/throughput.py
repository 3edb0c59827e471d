"""Training throughput (samples per second) against the number of devices and processes (issue 23).

    python benchmarks/scaling/throughput.py --length 17984 --rounds 3 --out benchmarks/scaling/results/L17984.json
    python benchmarks/scaling/throughput.py --length 100000 --streaming --rounds 3 \\
        --out benchmarks/scaling/results/L100000-streaming.json

One step is ``hamecho.train_step`` (Adam) of the paper's EigenWorms model (linear HSSM, hidden 64, state 16,
2 blocks, float32 parameters, float64 cores, RHEL with eps 0.1, dropout on) on a batch of ``--batch``
random sequences of 6 channels; ``norm="batch"`` (the paper's), or with ``--streaming`` ``norm="layer"`` and
``memory=Streaming(512)``. Each setting runs in fresh processes:

    1 device x 2 threads      one CPU device, XLA's default intra-op threads (one per core)
    2 devices x 1 thread      jax_num_cpu_devices=2 in one process, each device single-threaded
    2 processes x 1 device    two processes on 127.0.0.1 (jax.distributed, gloo), each single-threaded

The batch is split over the devices (``hamecho.data_parallel``); every process builds the same batch and
feeds its own rows. A setting compiles and runs one step, then times ``--steps`` steps; its throughput is
the batch over the median step time. Rounds run every setting once each, the order rotating, so that a
busy period of a shared machine hits every setting alike; reported per setting: the median over rounds of
its throughput, and per round the ratio to the 1-device setting of that round. The load average is
recorded before and after each setting, and so is the CPU time (user + system, summed over a setting's
processes) of the timed steps: on a machine shared with other work, wall-clock throughput measures the
share of the cores a setting got as much as the setting, while CPU seconds per sample measure what it
costs.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

SINGLE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
SETTINGS = {
    "1 device x 2 threads": {"devices": 1, "processes": 1, "xla_flags": ""},
    "2 devices x 1 thread": {"devices": 2, "processes": 1, "xla_flags": SINGLE_THREAD},
    "2 processes x 1 device": {"devices": 1, "processes": 2, "xla_flags": SINGLE_THREAD},
}


# --- one process of one setting ----------------------------------------------------------------------------

def worker(args) -> None:
    import jax

    if args.devices > 1:
        jax.config.update("jax_num_cpu_devices", args.devices)
    if args.num_processes > 1:
        jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    jax.config.update("jax_enable_x64", True)   # float64 cores, as `hamecho train` runs them by default
    import jax.numpy as jnp
    import numpy as np
    import optax

    import hamecho as he

    norm, memory = ("layer", he.Streaming(512)) if args.streaming else ("batch", None)
    model = he.HSSM(in_dim=6, out_dim=5, hidden=64, state=16, blocks=2, hru="linear", norm=norm, dtype=jnp.float32,
                    key=jax.random.PRNGKey(0))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((args.batch, args.length, 6), dtype=np.float32)
    y = rng.integers(0, 5, args.batch).astype(np.int32)
    optimizer = optax.adam(1e-3)
    opt_state = he.init_optimizer(optimizer, model)
    key = jax.random.PRNGKey(2)
    if jax.device_count() > 1:
        dp = he.data_parallel()
        x, y = dp.shard(x, y)
        model, opt_state, key = dp.replicate((model, opt_state, key))

    def step(model, opt_state):
        model, opt_state, loss = he.train_step(model, opt_state, x, y, optimizer, gradient=he.RHEL(eps=0.1),
                                               memory=memory, key=key)
        return model, opt_state, float(loss)

    start = time.perf_counter()
    model, opt_state, loss = step(model, opt_state)
    first = time.perf_counter() - start
    times, cpu_start = [], os.times()
    for _ in range(args.steps):
        start = time.perf_counter()
        model, opt_state, loss = step(model, opt_state)
        times.append(time.perf_counter() - start)
    cpu_end = os.times()
    cpu = (cpu_end.user - cpu_start.user) + (cpu_end.system - cpu_start.system)
    print(json.dumps({"devices": jax.device_count(), "processes": jax.process_count(), "first_step_s": first,
                      "step_s": times, "loss": loss, "cpu_s": cpu, "process": jax.process_index()}), flush=True)


# --- the driver --------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_setting(name: str, args) -> dict:
    setting = SETTINGS[name]
    env = {**os.environ, "XLA_FLAGS": setting["xla_flags"]}
    base = [sys.executable, __file__, "--worker", "--length", str(args.length), "--batch", str(args.batch),
            "--steps", str(args.steps), "--devices", str(setting["devices"])] + (["--streaming"] if args.streaming
                                                                                   else [])
    if setting["processes"] > 1:
        port = free_port()
        commands = [base + ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(setting["processes"]),
                            "--process-id", str(i)] for i in range(setting["processes"])]
    else:
        commands = [base]
    load_before = os.getloadavg()[0]
    children = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                for c in commands]
    outputs = [child.communicate(timeout=args.timeout) for child in children]
    for child, (_, err) in zip(children, outputs):
        if child.returncode != 0:
            raise RuntimeError(f"{name}: a process failed:\n{err[-3000:]}")
    reports = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    row = reports[0]
    median = statistics.median(row["step_s"])
    cpu = sum(r["cpu_s"] for r in reports)   # every process's CPU time over the timed steps
    return row | {"setting": name, "median_step_s": median, "samples_per_s": args.batch / median,
                  "cpu_s_per_sample": cpu / (args.steps * args.batch),
                  "load_before": load_before, "load_after": os.getloadavg()[0]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=17984)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--streaming", action="store_true", help="norm 'layer' and memory=Streaming(512)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per setting and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per setting")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--devices", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--coordinator", help=argparse.SUPPRESS)
    parser.add_argument("--num-processes", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--process-id", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0

    rows = []
    for r in range(args.rounds):
        order = args.settings[r % len(args.settings):] + args.settings[:r % len(args.settings)]
        for name in order:
            row = run_setting(name, args) | {"round": r}
            rows.append(row)
            print(f"round {r}: {name}: {row['samples_per_s']:.3f} samples/s (median step {row['median_step_s']:.2f} s,"
                  f" {row['cpu_s_per_sample']:.2f} CPU s per sample, load {row['load_before']:.1f} -> "
                  f"{row['load_after']:.1f})", flush=True)
    summary = {}
    first = args.settings[0]
    for name in args.settings:
        mine = [row for row in rows if row["setting"] == name]
        ratios = [row["samples_per_s"] / next(b["samples_per_s"] for b in rows
                                              if b["setting"] == first and b["round"] == row["round"]) for row in mine]
        summary[name] = {"samples_per_s": statistics.median(row["samples_per_s"] for row in mine),
                         "ratio_to_first": statistics.median(ratios), "ratios": ratios,
                         "cpu_s_per_sample": statistics.median(row["cpu_s_per_sample"] for row in mine),
                         "load": statistics.median(row["load_before"] for row in mine)}
        print(f"{name}: {summary[name]['samples_per_s']:.3f} samples/s, x{summary[name]['ratio_to_first']:.2f} "
              f"(per round {', '.join(f'{v:.2f}' for v in ratios)}); "
              f"{summary[name]['cpu_s_per_sample']:.2f} CPU s per sample")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"length": args.length, "batch": args.batch, "streaming": args.streaming,
                                        "steps": args.steps, "rounds": args.rounds, "summary": summary, "rows": rows,
                                        "cpus": os.cpu_count(), "platform": platform.platform(),
                                        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:])}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
