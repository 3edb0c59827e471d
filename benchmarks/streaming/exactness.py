"""The exactness targets of issue #14, measured: the worst relative error over every gradient array.

    python benchmarks/streaming/exactness.py --out benchmarks/streaming/results/exactness.json

float64, 3-block HSSM (hidden 8, state 4), norm "layer", dropout on (the same per-step masks in every
method), batch 3. rel err = max|g − r| / max|r| per array (``hamecho.tools.gradcheck``), the worst array
reported. Streaming against: BPTT of the same model, and plain (non-streaming) RHEL.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    import hamecho as he
    from hamecho.nn.streaming import stream_retrace_error
    from hamecho.tools.gradcheck import compare_gradients

    def problem(hru, task, length, step=0.1, scale=1.0):
        model = he.HSSM(in_dim=3, out_dim=3, hidden=8, state=4, blocks=3, hru=hru, task=task, output_step=5,
                        step=step, dtype=jnp.float64, norm="layer", key=jax.random.PRNGKey(0))
        x = scale * jax.random.normal(jax.random.PRNGKey(1), (3, length, 3), jnp.float64)
        y = (jnp.array([0, 2, 1]) if task == "classification"
             else jax.random.uniform(jax.random.PRNGKey(2), (3, length // 5, 3), jnp.float64, -1, 1))
        return model, x, y

    worst = lambda g, r: max(row["rel_err"] for row in compare_gradients(g, r))
    key = jax.random.PRNGKey(7)
    rows = []

    def record(target, value, bound, **info):
        rows.append({"target": target, "max_rel_err": value, "bound": bound, "met": value <= bound, **info})
        print(f"{target:<70} {value:.2e}  (≤ {bound:g}: {'met' if value <= bound else 'MISSED'})", flush=True)

    for task in ("classification", "regression"):
        for length, chunk in ((480, 96), (479, 50)):
            model, x, y = problem("linear", task, length)
            _, bptt = he.value_and_grad(model, x, y, gradient=he.BPTT(), key=key)
            _, streamed = he.value_and_grad(model, x, y, memory=he.Streaming(chunk), key=key)
            record(f"linear {task} L={length} chunk {chunk}: streaming RHEL(0.1) vs BPTT", worst(streamed, bptt),
                   1e-9, task=task, length=length, chunk=chunk)
    model, x, y = problem("nonlinear", "classification", 480)
    _, bptt = he.value_and_grad(model, x, y, gradient=he.BPTT(), key=key)
    for difference in ("direct", "quadrature"):
        gradient = he.RHEL(eps=1e-3, difference=difference)
        _, plain = he.value_and_grad(model, x, y, gradient=gradient, key=key)
        _, streamed = he.value_and_grad(model, x, y, gradient=gradient, memory=he.Streaming(50), key=key)
        record(f"nonlinear L=480 chunk 50 ε=1e-3 {difference}: streaming vs BPTT", worst(streamed, bptt), 1e-6)
        record(f"nonlinear L=480 chunk 50 ε=1e-3 {difference}: streaming vs plain RHEL", worst(streamed, plain), 1e-9)
        record(f"nonlinear L=480 ε=1e-3 {difference}: plain RHEL vs BPTT (reference)", worst(plain, bptt), 1e-6)
    model, x, y = problem("nonlinear", "classification", 2000, step=0.5, scale=3.0)
    fixed = he.FixedPointLeapfrog(fraction_bits=40)
    retrace_fixed = float(jnp.max(stream_retrace_error(model, x, chunk=50, integrator=fixed)))
    retrace_float = float(jnp.max(stream_retrace_error(model, x, chunk=50)))
    record("fixed point L=2000 δ=0.5: streamed rebuild, worst block's retrace error", retrace_fixed, 0.0)
    rows[-1]["float_retrace_same_problem"] = retrace_float
    print(f"{'  (float Leapfrog on the same problem)':<70} {retrace_float:.2e}")
    gradient = he.RHEL(eps=1e-3)
    _, plain = he.value_and_grad(model, x, y, gradient=gradient, integrator=fixed, key=key)
    _, streamed = he.value_and_grad(model, x, y, gradient=gradient, integrator=fixed, memory=he.Streaming(50), key=key)
    record("fixed point L=2000: streaming vs plain fixed-point RHEL", worst(streamed, plain), 1e-6)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
