"""The authors' training step (github.com/guillaumepourcel/rhel, their ``make_step``) at the paper's shapes,
one case per fresh process: step time and peak memory measured as ``hamecho bench`` measures hamecho's.

    git clone https://github.com/guillaumepourcel/rhel /tmp/rhel-authors      # a scratch folder, never this repo
    python benchmarks/performance/authors.py --authors /tmp/rhel-authors --model NonlinHRU --algo RHEL

Their modules are imported from ``--authors`` (nothing of theirs is copied here). The model: 6 blocks,
hidden 64, state 16, 6 input channels, 5 classes, L = 17,984, batch 4, their defaults otherwise (float32
everywhere: their code does not use x64; ``LinHRU`` with ``complex_ssm`` and ``train_steps`` as their
configs set them), Adam (lr 1e-4) over every inexact array, their ``classification_loss``. Reported:
the first step (compilation included), the median of ``--steps`` more, the whole process's peak resident
set (VmHWM, compilation included) and the step's own peak (after the compiler's freed heap is returned
with ``malloc_trim`` and the mark reset), as ``hamecho.tools.bench`` does for hamecho's rows.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--authors", required=True, help="a checkout of github.com/guillaumepourcel/rhel")
    parser.add_argument("--model", default="NonlinHRU", choices=("LinHRU", "NonlinHRU"))
    parser.add_argument("--algo", default="RHEL", choices=("RHEL", "BPTT"))
    parser.add_argument("--length", type=int, default=17984)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args(argv)
    sys.path.insert(0, os.path.abspath(args.authors))

    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import optax
    from models.generate_model import create_model  # their code, from --authors
    from train_and_test import classification_loss, make_step

    from hamecho.runtime import huge_pages_state
    from hamecho.tools.bench import process_peak_rss, release_freed_memory, reset_peak_rss

    key_model, key_x, key_y, key_step = jax.random.split(jax.random.PRNGKey(0), 4)
    extra = {"complex_ssm": True, "train_steps": True} if args.model == "LinHRU" else {}
    model, state = create_model(args.model, 6, args.length, 5, 64, num_blocks=6, ssm_dim=16, classification=True,
                                learning_algorithm=args.algo, epsilon=0.1, key=key_model, **extra)
    x = jax.random.normal(key_x, (4, args.length, 6), jnp.float32)
    y = jax.nn.one_hot(jax.random.randint(key_y, (4,), 0, 5), 5)
    filter_spec = jax.tree_util.tree_map(lambda _: True, model)
    optimizer = optax.adam(1e-4)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))

    def step(model, state, opt_state):
        out = make_step(model, filter_spec, x, y, classification_loss, state, optimizer, opt_state, key_step, 1.0,
                        False)
        jax.block_until_ready(out)
        return out

    start = time.perf_counter()
    model, state, opt_state, _ = step(model, state, opt_state)
    first = time.perf_counter() - start
    process_peak = process_peak_rss()
    release_freed_memory()
    reset_peak_rss()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        model, state, opt_state, value = step(model, state, opt_state)
        times.append(time.perf_counter() - start)
    step_peak = process_peak_rss()
    print(json.dumps({"code": "authors", "model": args.model, "algo": args.algo, "length": args.length, "batch": 4,
                      "first_step_s": first, "step_time_s": statistics.median(times),
                      "process_peak_bytes": max(process_peak, step_peak), "step_peak_bytes": step_peak,
                      "loss": float(value), "huge_pages": huge_pages_state(), "load": os.getloadavg()[0],
                      "jax": jax.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
