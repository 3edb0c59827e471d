"""Physics-aware training on the circuit with a wrong twin: the model's leapfrog instead of the circuit's own
continuous-time model (docs/physical.md, "The circuit column"). The problem and the reference are those of
``hamecho rules --knobs circuit``: the default comparison problem, BPTT through ``ExactFlow(series_resistance=R)``.

    XLA_FLAGS=--xla_cpu_multi_thread_eigen=false taskset -c 0 python benchmarks/rules/leapfrog_twin.py
"""
import json

import jax

import hamecho as he
from hamecho.tools.robustness import comparison as cmp
from hamecho.tools.robustness.problems import make_problem
from hamecho.tools.robustness.selection import compare

jax.config.update("jax_enable_x64", True)
model, x, y = make_problem("linear", cmp.ComparisonSetup().gradient)
_, leapfrog_bptt = he.value_and_grad(model, x, y, gradient=he.BPTT())
for resistance in (0.0, 0.1):
    device = cmp.comparison_device("circuit", resistance)
    _, reference = he.value_and_grad(model, x, y, gradient=he.BPTT(), integrator=device.twin(exact=True))
    _, grads = he.value_and_grad(model, x, y, gradient=he.PhysicsAware(twin=he.Leapfrog()), integrator=device)
    keep = ("cosine", "norm_ratio", "cosine_min")
    print(json.dumps({"series_resistance": resistance,
                      "physics_aware_leapfrog_twin": {k: compare(grads, reference, model)[k] for k in keep},
                      "leapfrog_bptt": {k: compare(leapfrog_bptt, reference, model)[k] for k in keep}}))
