"""Data parallelism (issue 23): the library's step on a sharded batch, and `hamecho train` over several devices
and processes. The multi-device cases run in subprocesses with virtual CPU devices (jax_num_cpu_devices)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def run_script(script: str, *args, env=None, timeout=600) -> dict:
    done = subprocess.run([sys.executable, str(HERE / script), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- the library: one train_step on a sharded batch equals the unsharded step ---------------------------

# two subprocesses, so that the two xdist workers share the compile time
GROUPS = {"batch-norm": ["rhel-batch", "bptt-batch-timechunks", "refusal"],
          "layer-norm": ["rhel-layer-streaming", "bptt-layer", "rhel-nonlinear-layer-streaming-float32"]}


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_sharded_train_step_equals_the_unsharded_step(group):
    results = run_script("sharded_step.py", *GROUPS[group])
    cases = {name: r for name, r in results.items() if name != "refusal"}
    assert set(cases) == set(GROUPS[group]) - {"refusal"}
    assert {r["devices"] for r in cases.values()} == {2, 4}
    for name, r in cases.items():
        tolerance = 1e-12 if r["dtype"] == "float64" else 1e-6
        for what in ("loss", "gradients", "parameters", "norm_statistics"):
            if what in r:
                assert r[what] <= tolerance, (name, what, r[what])
        assert r["gradient_scale"] > 1e-3, name            # the gradients compared are not all zero
        assert r["model_replicated"], name
        if "norm_statistics" in r:
            assert r["norm_statistics_moved"] > 1e-4, name    # the step did update the statistics
    if group == "batch-norm":
        r = cases["rhel-batch"]
        assert r["plain_jax"] <= 1e-15                        # jax.device_put with NamedSharding: the same step
        assert r["predict"] <= 1e-12 and r["predict_sharded"]
        # nothing but all-reduces of parameter-sized arrays (gradients, the norm's mean and variance, the loss)
        # crosses devices: no batch-sized array is gathered onto one device
        assert r["collectives"]["kinds"] == ["all-reduce"], r["collectives"]
        assert r["collectives"]["reduced_elements"] <= 2 * r["parameters_count"] < r["activation_elements"]
        assert results["refusal"] == ("the batch size 6 is not a multiple of the 4 devices it is split over; use a "
                                      "multiple of 4 or fewer devices")
