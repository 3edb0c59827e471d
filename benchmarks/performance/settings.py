"""A process-wide setting on and off, measured side by side: two processes started together, one each way.

    python benchmarks/performance/settings.py --setting huge_pages --hru linear --norm batch --rounds 7 \
        --out benchmarks/performance/results/huge_pages-linear-batch.json

Some settings can only be chosen before a process starts (glibc's huge pages: ``GLIBC_TUNABLES``; XLA's
flags: ``XLA_FLAGS``), so the two sides cannot be interleaved in one process. Instead both processes
start at the same moment and run the same rounds (a forward pass and a training step each round,
interleaved: ``hamecho.tools.timing``), so a busy period of a shared machine hits both alike; each
reports its medians, its step/forward ratio and its peak memory. ``--pairs`` repeats the pair.

Settings: ``huge_pages`` (GLIBC_TUNABLES=glibc.malloc.hugetlb=1 against nothing) and ``small_loops``
(XLA_FLAGS=--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold=… against nothing: XLA
compiles each time scan, loop and all, into one kernel).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

SETTINGS = {
    "huge_pages": {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"},
    "small_loops": {"XLA_FLAGS": "--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold=2000000000"},
}


def child(args) -> int:
    import equinox as eqx
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    import hamecho as he
    from hamecho.core.choices import Choices
    from hamecho.nn.api import _train_step, loss_and_statistics
    from hamecho.tools.bench import process_peak_rss
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
    memory = he.Streaming() if args.memory == "streaming" else None
    choices = Choices(gradient=he.RHEL() if args.algo == "rhel" else he.BPTT(), memory=memory)
    forward = eqx.filter_jit(lambda m, x, y, k: loss_and_statistics(m, x, y, choices, k)[0])
    times = interleave({"forward": lambda: forward(model, x, y, key),
                        "step": lambda: _train_step(model, opt_state, x, y, optimizer, choices, key)},
                       rounds=args.rounds)
    print(json.dumps({"forward": spread(times["forward"]), "step": spread(times["step"]),
                      "step/forward": ratio(times, "step", "forward"), "peak_bytes": process_peak_rss(),
                      "machine": machine_state(),
                      "env": {k: os.environ.get(k) for k in ("GLIBC_TUNABLES", "XLA_FLAGS")}}))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=tuple(SETTINGS), default="huge_pages")
    parser.add_argument("--hru", default="linear", choices=("linear", "nonlinear"))
    parser.add_argument("--norm", default="batch", choices=("batch", "layer"))
    parser.add_argument("--algo", default="rhel", choices=("rhel", "bptt"))
    parser.add_argument("--memory", default="none", choices=("none", "streaming"))
    parser.add_argument("--length", type=int, default=17984)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--pairs", type=int, default=1)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    base = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "XLA_FLAGS")}
    base["HAMECHO_COMPILE_CACHE"] = "off"
    command = [sys.executable, __file__, "--child", "--hru", args.hru, "--norm", args.norm, "--algo", args.algo,
               "--memory", args.memory, "--length", str(args.length), "--rounds", str(args.rounds)]
    pairs = []
    for _ in range(args.pairs):
        running = {side: subprocess.Popen(command, env={**base, **(SETTINGS[args.setting] if side == "on" else {})},
                                          stdout=subprocess.PIPE, text=True) for side in ("on", "off")}
        pair = {side: json.loads(p.communicate()[0].strip().splitlines()[-1]) for side, p in running.items()}
        pair["on/off step"] = pair["on"]["step"]["median"] / pair["off"]["step"]["median"]
        pair["on/off forward"] = pair["on"]["forward"]["median"] / pair["off"]["forward"]["median"]
        pairs.append(pair)
        ratios = {side: pair[side]["step/forward"]["median"] for side in ("on", "off")}
        print(f"{args.setting} on/off: step {pair['on/off step']:.2f}, forward {pair['on/off forward']:.2f}; "
              f"step/forward on {ratios['on']:.2f}, off {ratios['off']:.2f}; "
              f"peak on {pair['on']['peak_bytes'] / 2**30:.2f} GiB, off {pair['off']['peak_bytes'] / 2**30:.2f} GiB; "
              f"load {pair['off']['machine']['load']}", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"setting": args.setting, "args": vars(args) | {"out": str(args.out)},
                                        "pairs": pairs}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
