"""Step time of streaming RHEL against plain RHEL and BPTT, side by side in one process (issue #14, target 3).

    python benchmarks/streaming/speed.py --length 17984 --rounds 7 --out benchmarks/streaming/results/speed.json

Every method's jitted training step is compiled and run once first; then ``--rounds`` rounds, each running
one step of every method in turn (the order rotates from round to round), so a slow period of a shared
machine hits every method alike. Reported per method: the median step time; per pair: the median of the
per-round ratios (streaming / other), with the range.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import cases  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=17984)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--hru", default="linear", choices=("linear", "nonlinear"))
    parser.add_argument("--methods", nargs="+", default=["rhel_streaming", "rhel", "bptt"])
    parser.add_argument("--chunks", nargs="+", type=int, default=[cases.STREAM_CHUNK],
                        help="streaming chunk sizes (each a method of its own)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)
    model, x, y = cases.build(args.length, hru=args.hru)
    key = jax.random.PRNGKey(1)
    runs = {}
    for method in args.methods:
        for chunk in (args.chunks if method == "rhel_streaming" else [None]):
            name = method if chunk is None else f"{method}@{chunk}"
            step, init = cases.training_step(method, chunk or cases.STREAM_CHUNK)
            start = time.perf_counter()
            state = (model, init(model))
            new_model, opt_state, loss = step(*state, x, y, key)
            jax.block_until_ready(loss)
            runs[name] = {"step": step, "state": (new_model, opt_state), "times": [], "loss0": float(loss),
                          "compile_and_first_s": time.perf_counter() - start}
            print(f"{name}: compiled and ran one step in {runs[name]['compile_and_first_s']:.1f} s", flush=True)
    names = list(runs)
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            run = runs[name]
            start = time.perf_counter()
            new_model, opt_state, loss = run["step"](*run["state"], x, y, key)
            jax.block_until_ready(loss)
            run["times"].append(time.perf_counter() - start)
            run["state"] = (new_model, opt_state)
        print(f"round {r + 1}: " + ", ".join(f"{n} {runs[n]['times'][-1]:.3f} s" for n in names), flush=True)
    result = {"length": args.length, "hru": args.hru, "rounds": args.rounds, **cases.SHAPE,
              "norm": "layer", "machine": platform.machine(), "jax": jax.__version__,
              "note": "shared 2-core machine: per-round ratios, medians",
              "methods": {n: {"median_s": statistics.median(r["times"]), "times_s": r["times"],
                              "compile_and_first_s": r["compile_and_first_s"]} for n, r in runs.items()},
              "ratios": {}}
    for a in names:
        if not a.startswith("rhel_streaming"):
            continue
        for b in names:
            if b.startswith("rhel_streaming"):
                continue
            per_round = [ta / tb for ta, tb in zip(runs[a]["times"], runs[b]["times"])]
            result["ratios"][f"{a} / {b}"] = {"median": statistics.median(per_round), "min": min(per_round),
                                              "max": max(per_round)}
    for n in names:
        print(f"{n:>22}: median {result['methods'][n]['median_s']:.3f} s")
    for pair, r in result["ratios"].items():
        print(f"{pair:>40}: {r['median']:.3f} (range {r['min']:.3f}–{r['max']:.3f})")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
