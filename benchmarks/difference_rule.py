"""Where is RHEL's "direct" difference rule as accurate as "quadrature", and is it cheaper? (issue #21 item 7)

For a nonlinear HSSM in float64 (the gradcheck problem: 3 blocks, hidden 16, state 8, batch 4, δ = 1e-4
unless told otherwise), per ε: the max relative error (worst array) of RHEL with each rule against float64
BPTT, and the gap between the two rules' gradients. Then the time of one value-and-grad with each rule,
measured side by side, interleaved over rounds (ratio direct / quadrature).

    taskset -c 0 .venv/bin/python benchmarks/difference_rule.py        # 13 min on one core shared at load ~10
    taskset -c 0 .venv/bin/python benchmarks/difference_rule.py --length 200 --step 0.3
"""
from __future__ import annotations

import argparse
import json
import time

import jax

jax.config.update("jax_enable_x64", True)

import hamecho as he  # noqa: E402
from hamecho.tools.gradcheck import compare_gradients, prepare_problem, summarize  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=1000)
    parser.add_argument("--step", type=float, default=1e-4, help="the nonlinear HRU's initial step size δ")
    parser.add_argument("--eps", default="1,0.3,0.1,0.03,0.01,0.001")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    problem = prepare_problem(hru="nonlinear", length=args.length, step=args.step, dtype="float64")
    model, x, y, reference = problem["model"], problem["x"], problem["y"], problem["reference"]
    rows = []
    for eps in map(float, args.eps.split(",")):
        grads = {rule: he.value_and_grad(model, x, y, gradient=he.RHEL(eps=eps, difference=rule))[1]
                 for rule in ("direct", "quadrature")}
        row = {"eps": eps, **{rule: summarize(compare_gradients(g, reference))["max_rel_err"]
                              for rule, g in grads.items()},
               "gap": summarize(compare_gradients(grads["direct"], grads["quadrature"]))["max_rel_err"]}
        rows.append(row)
        print(f"eps {eps:g}: direct {row['direct']:.3g}  quadrature {row['quadrature']:.3g}  "
              f"gap {row['gap']:.3g}", flush=True)

    calls = {rule: jax.jit(lambda m, a, b, rule=rule: he.value_and_grad(
        m, a, b, gradient=he.RHEL(eps=0.1, difference=rule))) for rule in ("direct", "quadrature")}
    for call in calls.values():
        jax.block_until_ready(call(model, x, y))
    times = {rule: [] for rule in calls}
    for _ in range(args.rounds):
        for rule, call in calls.items():
            start = time.perf_counter()
            jax.block_until_ready(call(model, x, y))
            times[rule].append(time.perf_counter() - start)
    ratio = min(times["direct"]) / min(times["quadrature"])
    print(f"time direct / quadrature (best of {args.rounds} interleaved rounds): {ratio:.3f}")
    print(json.dumps({"length": args.length, "step": args.step, "rows": rows, "time_ratio": ratio,
                      "times_s": times}))


if __name__ == "__main__":
    main()
