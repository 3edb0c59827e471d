"""Where is the nonlinear HRU's gradient itself trustworthy? Step size δ against sequence length L.

For a 6-block nonlinear HSSM (hidden 64, state 16, batch 4, random inputs, float64) at fixed
initialisation except δ, report per (δ, L): the float64 BPTT gradient norm (is it finite and of a
sane size?) and the free echo's retrace error in float64 (does rounding stay bounded or does chaos
amplify it?). Output: Markdown table on stdout and in OUT/stability_map.md.

    .venv/bin/python benchmarks/fidelity/stability_map.py [OUT_DIR]
"""
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from hamecho.core.gradients import BPTT  # noqa: E402
from hamecho.nn.api import value_and_grad  # noqa: E402
from hamecho.tools.gradcheck import random_problem  # noqa: E402

STEPS = (1e-4, 1e-2, 0.1, 0.5)
LENGTHS = (1000, 4000, 17984)
out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/fidelity/results")
out.mkdir(parents=True, exist_ok=True)
lines = ["| δ \\ L | " + " | ".join(str(n) for n in LENGTHS) + " |", "|---" * (len(LENGTHS) + 1) + "|"]
for step in STEPS:
    cells = []
    for length in LENGTHS:
        start = time.perf_counter()
        model, x, y = random_problem(hru="nonlinear", blocks=6, hidden=64, state=16, length=length, batch=4,
                                     in_dim=6, classes=5, task="classification", output_step=1, step=step,
                                     seed=0, dtype=jnp.float64)
        _, grads = value_and_grad(model, x, y, gradient=BPTT())
        leaves = [np.asarray(g) for g in jax.tree_util.tree_leaves(grads)]
        norm = float(np.sqrt(sum(np.sum(np.square(g)) for g in leaves)))
        retrace = max(float(b.hru.retrace_error(u)) for b, u in zip(model.blocks, model.hru_inputs(x)))
        cells.append(f"‖g‖ {norm:.1e}, retrace {retrace:.0e}")
        print(f"δ={step:g} L={length}: grad norm {norm:.3e}, retrace {retrace:.2e} "
              f"({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    lines.append(f"| {step:g} | " + " | ".join(cells) + " |")
text = "\n".join(lines)
(out / "stability_map.md").write_text(text + "\n")
print(text)
