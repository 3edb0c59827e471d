"""Run by tests/test_parallel.py in a subprocess with several virtual CPU devices: one ``train_step`` on a
batch sharded over 2 and over 4 devices against the same step on one device.

    python tests/sharded_step.py [CASE ...]     # prints one JSON line: the largest differences per case

The optimiser is ``trace(decay=0)`` then ``scale(-lr)``: its state after one step is exactly the
gradient, so one ``train_step`` gives the loss, the gradients, the updated parameters and the norm
statistics to compare. A difference is the largest absolute one over all arrays, relative to the largest
magnitude among the reference arrays of that kind.
"""
import json
import re
import sys
import time

import jax

DEVICES = 4
jax.config.update("jax_num_cpu_devices", DEVICES)
jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import hamecho as he  # noqa: E402
from hamecho.core.choices import Choices  # noqa: E402
from hamecho.nn import api  # noqa: E402
from hamecho.nn.hssm import count_parameters  # noqa: E402

N, L, IN, OUT = 8, 48, 3, 4
OPTIMIZER = optax.chain(optax.trace(decay=0.0), optax.scale(-0.5))

# (name, devices, hru, norm, gradient, memory, dtype)
CASES = [
    ("rhel-batch", 2, "linear", "batch", he.RHEL(), None, "float64"),
    ("bptt-batch-timechunks", 4, "linear", "batch", he.BPTT(), he.TimeChunks(16), "float64"),
    ("rhel-layer-streaming", 4, "linear", "layer", he.RHEL(), he.Streaming(16), "float64"),
    ("bptt-layer", 2, "linear", "layer", he.BPTT(), None, "float64"),
    ("rhel-layer-streaming-float32", 2, "linear", "layer", he.RHEL(), he.Streaming(16), "float32"),
]


HLO_CASES = ("rhel-batch", "bptt-layer")   # the compiled program is read for these


def arrays(tree):
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_array))]


def relative_difference(reference, other) -> float:
    ref, oth = arrays(reference), arrays(other)
    assert len(ref) == len(oth) > 0
    scale = max(float(np.max(np.abs(a))) for a in ref) or 1.0
    return max(float(np.max(np.abs(a - b))) for a, b in zip(ref, oth)) / scale


def norm_statistics(model):
    return [(b.norm.running_mean, b.norm.running_var) for b in model.blocks if hasattr(b.norm, "running_mean")]


def collectives(compiled_text: str) -> dict:
    """Cross-device operations of a compiled program: which kinds occur, the elements all-reduced, and how
    many all-reduces sit in the body of a loop (run at every iteration, e.g. every time step)."""
    kinds = sorted(set(re.findall(r"\b(all-gather|all-to-all|collective-permute|reduce-scatter|all-reduce)"
                                  r"(?:-start)?\(", compiled_text)))
    loop_bodies = set(re.findall(r"body=%?([\w.\-]+)", compiled_text))
    reduced, in_loops, computation = 0, 0, None
    for line in compiled_text.splitlines():
        if line and not line.startswith(" ") and line.rstrip().endswith("{"):
            computation = line.split()[1 if line.startswith("ENTRY") else 0].lstrip("%")
        if re.search(r"\ball-reduce(-start)?\(", line):
            in_loops += computation in loop_bodies
            result_type = line.split("=", 1)[1].split("all-reduce", 1)[0]
            for dims in re.findall(r"[a-z]\d+\[([\d,]*)\]", result_type):
                reduced += int(np.prod([int(d) for d in dims.split(",") if d])) if dims else 1
    return {"kinds": kinds, "reduced_elements": reduced, "all_reduces_in_loops": in_loops,
            "loops": len(loop_bodies)}


def run_case(name, devices, hru, norm, gradient, memory, dtype):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(N, L, IN)).astype(dtype)
    y = rng.integers(0, OUT, N).astype(np.int32)
    model = he.HSSM(in_dim=IN, out_dim=OUT, hidden=8, state=4, blocks=1, hru=hru, norm=norm, dtype=dtype,
                    key=jax.random.PRNGKey(0))
    opt_state = he.init_optimizer(OPTIMIZER, model)
    key = jax.random.PRNGKey(11)   # dropout on: the sharded step must draw the global batch's masks
    ref_model, ref_state, ref_loss = he.train_step(model, opt_state, x, y, OPTIMIZER, gradient=gradient,
                                                   memory=memory, key=key)

    dp = he.data_parallel(devices=jax.devices()[:devices])
    xs, ys = dp.shard(x, y)
    assert len(xs.addressable_shards) == devices and xs.addressable_shards[0].data.shape[0] == N // devices
    sharded_model, sharded_state = dp.replicate((model, opt_state))
    new_model, new_state, loss = he.train_step(sharded_model, sharded_state, xs, ys, OPTIMIZER, gradient=gradient,
                                               memory=memory, key=key)
    out = {"devices": devices, "dtype": dtype,
           "loss": abs(float(loss) - float(ref_loss)) / abs(float(ref_loss)),
           "gradients": relative_difference(ref_state, new_state),
           "parameters": relative_difference(ref_model, new_model),
           "gradient_scale": max(float(np.max(np.abs(a))) for a in arrays(ref_state)),
           "model_replicated": all(a.sharding.is_fully_replicated for a in
                                   jax.tree_util.tree_leaves(eqx.filter(new_model, eqx.is_array)))}
    if norm == "batch":
        out["norm_statistics"] = relative_difference(norm_statistics(ref_model), norm_statistics(new_model))
        out["norm_statistics_moved"] = relative_difference(norm_statistics(model), norm_statistics(ref_model))
    if name == "rhel-batch":
        # the plain-JAX spelling gives the same step
        batch, replicated = dp.batch, dp.replicated
        px, py = jax.device_put((x, y), batch)
        pm, ps = jax.device_put((model, opt_state), replicated)
        plain_model, _, _ = he.train_step(pm, ps, px, py, OPTIMIZER, gradient=gradient, memory=memory, key=key)
        out["plain_jax"] = relative_difference(new_model, plain_model)
        # predict on the sharded batch: outputs stay split over the devices, equal to the unsharded ones
        reference_logits, logits = he.predict(ref_model, x), he.predict(new_model, xs)
        out["predict"] = float(np.max(np.abs(np.asarray(logits) - np.asarray(reference_logits))))
        out["predict_sharded"] = not logits.sharding.is_fully_replicated
    if name in HLO_CASES:
        # the compiled step moves gradients and norm statistics between devices, never the batch, and
        # not inside the time loops
        choices = Choices(gradient=gradient, memory=memory)
        text = api._train_step.lower(sharded_model, sharded_state, xs, ys, OPTIMIZER, choices,
                                     key).compile().compiled.as_text()
        out["collectives"] = collectives(text)
        out["parameters_count"] = count_parameters(model)
        out["activation_elements"] = N * L * 8
    if name == "rhel-batch":
        # the input check (NaN/Inf count, in slices) on a sharded batch large enough to be sliced: counted
        # where it lies, not gathered
        big = np.zeros((N, 8192, IN), dtype)
        big[1, 5, 2], big[N - 1, -1, 0], big[0, 3000, 1] = np.nan, np.inf, -np.inf
        big_sharded = dp.shard(big)
        out["input_check"] = collectives(api._not_finite.lower(big_sharded).compile().as_text()) | {
            "count": int(api._not_finite(big_sharded)), "samples": N, "batch_elements": big.size}
    return out


def refusal() -> str:
    """The one-sentence error for a batch the devices do not divide."""
    try:
        he.data_parallel().shard(np.zeros((6, L, IN)))
    except ValueError as error:
        return str(error)
    return ""


if __name__ == "__main__":
    assert jax.device_count() == DEVICES, jax.devices()
    selected = sys.argv[1:] or [c[0] for c in CASES]
    results = {"refusal": refusal()} if "refusal" in selected or not sys.argv[1:] else {}
    for case in CASES:
        if case[0] in selected:
            start = time.perf_counter()
            results[case[0]] = run_case(*case) | {"seconds": time.perf_counter() - start}
    print(json.dumps(results))
