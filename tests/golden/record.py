"""Record golden outputs of every option combination that existed before the redesign (issue #13).

Run once, before the code moved: ``.venv/bin/python tests/golden/record.py`` wrote ``golden.npz``
(loss, every gradient array, predict, retrace_error; one Adam step with dropout). ``test_golden.py``
recomputes each case through the new API (and the legacy keywords) and compares bit for bit.
This script imports the pre-redesign module paths and is kept as the record of how the file was made.
"""
from __future__ import annotations

import json
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import hamecho  # noqa: E402

HERE = Path(__file__).parent
LENGTH, BATCH, IN_DIM, CLASSES = 23, 3, 3, 4

# (case name, hru, model dtype, CoreOptions keywords). Linear-only cases are marked by hru.
CASES = [
    ("bptt", None, "float64", {"algo": "bptt"}),
    ("bptt_checkpoint", None, "float64", {"algo": "bptt", "checkpoint_chunk": 7, "scan": "sequential"}),
    ("rhel_two_quadrature", None, "float64", {"algo": "rhel", "eps": 0.1, "difference": "quadrature"}),
    ("rhel_two_direct", None, "float64", {"algo": "rhel", "eps": 0.1, "difference": "direct"}),
    ("rhel_one_quadrature", None, "float64", {"algo": "rhel", "eps": 1e-3, "estimator": "one_sided",
                                              "difference": "quadrature"}),
    ("rhel_one_direct", None, "float64", {"algo": "rhel", "eps": 1e-3, "estimator": "one_sided",
                                          "difference": "direct"}),
    ("rhel_auto", None, "float64", {"algo": "rhel"}),
    ("bptt_parallel", "linear", "float64", {"algo": "bptt", "scan": "parallel"}),
    ("rhel_parallel", "linear", "float64", {"algo": "rhel", "scan": "parallel"}),
    ("rhel_f32_core_input", None, "float32", {"algo": "rhel", "core_dtype": "input"}),
    ("rhel_f32_core_float64", None, "float32", {"algo": "rhel", "core_dtype": "float64"}),
    ("bptt_f32_core_input", None, "float32", {"algo": "bptt", "core_dtype": "input"}),
    ("bptt_f32_core_float64", None, "float32", {"algo": "bptt", "core_dtype": "float64"}),
    ("rhel_fixed_point", None, "float64", {"algo": "rhel", "integrator": "fixed_point", "fraction_bits": 40}),
    ("rhel_fixed_point_one", None, "float64", {"algo": "rhel", "integrator": "fixed_point", "fraction_bits": 40,
                                               "estimator": "one_sided", "eps": 0.01}),
    ("bptt_recompute", None, "float64", {"algo": "bptt", "recompute_blocks": True}),
    ("rhel_recompute", None, "float64", {"algo": "rhel", "recompute_blocks": True}),
    ("bptt_block_chunk", None, "float64", {"algo": "bptt", "block_chunk": 5}),
    ("rhel_block_chunk", None, "float64", {"algo": "rhel", "block_chunk": 5}),
]
HRUS = ("linear", "nonlinear")


def problem(hru: str, dtype: str):
    key = jax.random.PRNGKey(7)
    model = hamecho.HSSM(in_dim=IN_DIM, out_dim=CLASSES, hidden=6, state=3, blocks=2, hru=hru,
                         step=0.3 if hru == "nonlinear" else 1e-4, dtype=dtype, key=key)
    x = jax.random.normal(jax.random.PRNGKey(8), (BATCH, LENGTH, IN_DIM), dtype)
    y = jnp.array([0, 3, 1])
    return model, x, y


def grad_arrays(grads) -> list[np.ndarray]:
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(eqx.filter(grads, eqx.is_array))]


def record() -> None:
    from hamecho.echo import CoreOptions, retrace_error
    from hamecho.train import _train_step

    arrays, index = {}, {}
    for hru in HRUS:
        for name, only, dtype, options in CASES:
            if only is not None and only != hru:
                continue
            case = f"{hru}/{name}"
            model, x, y = problem(hru, dtype)
            loss, grads = hamecho.value_and_grad(model, x, y, **options)
            leaves = grad_arrays(grads)
            arrays[f"{case}/loss"] = np.asarray(loss)
            for i, leaf in enumerate(leaves):
                arrays[f"{case}/grad{i:03d}"] = leaf
            # one Adam step with dropout and norm statistics, the way `hamecho train` takes it
            algo = options["algo"]
            core = CoreOptions(**{k: v for k, v in options.items() if k != "algo"}, algo=algo)
            optimizer, step = _train_step(1e-2, core)
            trainable = hamecho.train.eqx_filter_trainable(model)
            new_model, _, step_loss = step(model, optimizer.init(trainable), x, y, jax.random.PRNGKey(3))
            arrays[f"{case}/step_loss"] = np.asarray(step_loss)
            for i, leaf in enumerate(jax.tree_util.tree_leaves(eqx.filter(new_model, eqx.is_array))):
                arrays[f"{case}/step{i:03d}"] = np.asarray(leaf)
            layer = model.blocks[0].hru
            u = jax.random.normal(jax.random.PRNGKey(9), (LENGTH, BATCH, 6), dtype)
            arrays[f"{case}/retrace"] = np.asarray(retrace_error(layer.hamiltonian, layer.core_parameters(),
                                                                 layer.drives(u), core))
            index[case] = {"options": options, "dtype": dtype, "grads": len(leaves)}
        model, x, _ = problem(hru, "float64")
        arrays[f"{hru}/predict"] = np.asarray(hamecho.predict(model, x))
    np.savez_compressed(HERE / "golden.npz", **arrays)
    (HERE / "golden.json").write_text(json.dumps(index, indent=1) + "\n")
    print(f"{len(index)} cases, {len(arrays)} arrays -> {HERE / 'golden.npz'}")


if __name__ == "__main__":
    record()
