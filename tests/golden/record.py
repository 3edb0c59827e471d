"""Record the golden outputs: ``.venv/bin/python tests/golden/record.py [--out DIR] [CASE ...]``.

``golden.npz`` holds, for every case below and both HRUs (the parallel-scan cases: the linear one only),
the loss and every gradient array of ``hamecho.value_and_grad``, one Adam step with dropout and norm statistics
(``hamecho.train_step``: its loss and every array of the stepped model) and ``retrace_error`` of the first
block's HRU; and ``predict`` of each untrained model. ``golden.json`` indexes the cases. The files were first
written before the redesign of issue #13 (by the pre-redesign API); this script records them through today's
API, and ``tests/test_golden.py`` imports it: every case is recomputed and compared bit for bit with the
stored files, and one case is re-recorded by this script into a temporary folder and compared with them.

Re-record (the whole set, or the cases named; ``--merge`` keeps every other case as stored) only after a
deliberate numerical change, and say in the commit which cases changed and by how much. Record in the
environment the tests run in: XLA's CPU threading changes the last bit of some results (with
``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false`` the stored ``nonlinear/predict`` differs by 3e-17).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import hamecho as he

HERE = Path(__file__).parent
LENGTH, BATCH, IN_DIM, CLASSES = 23, 3, 3, 4
HRUS = ("linear", "nonlinear")

# (case, only for this HRU or None, model dtype, the pre-redesign keywords the case was recorded with, the same
# choices as strategy objects). scan="auto" on CPU, where the cases were recorded, is the sequential Leapfrog.
CASES = [
    ("bptt", None, "float64", {"algo": "bptt"}, dict(gradient=he.BPTT())),
    ("bptt_checkpoint", None, "float64", {"algo": "bptt", "checkpoint_chunk": 7, "scan": "sequential"},
     dict(gradient=he.BPTT(checkpoint_every=7), integrator=he.Leapfrog())),
    ("rhel_two_quadrature", None, "float64", {"algo": "rhel", "eps": 0.1, "difference": "quadrature"},
     dict(gradient=he.RHEL(eps=0.1, difference="quadrature"))),
    ("rhel_two_direct", None, "float64", {"algo": "rhel", "eps": 0.1, "difference": "direct"},
     dict(gradient=he.RHEL(eps=0.1, difference="direct"))),
    ("rhel_one_quadrature", None, "float64",
     {"algo": "rhel", "eps": 1e-3, "estimator": "one_sided", "difference": "quadrature"},
     dict(gradient=he.RHEL(eps=1e-3, estimator="one_sided", difference="quadrature"))),
    ("rhel_one_direct", None, "float64",
     {"algo": "rhel", "eps": 1e-3, "estimator": "one_sided", "difference": "direct"},
     dict(gradient=he.RHEL(eps=1e-3, estimator="one_sided", difference="direct"))),
    ("rhel_auto", None, "float64", {"algo": "rhel"}, dict(gradient=he.RHEL())),
    ("bptt_parallel", "linear", "float64", {"algo": "bptt", "scan": "parallel"},
     dict(gradient=he.BPTT(), integrator=he.AffineLeapfrog())),
    ("rhel_parallel", "linear", "float64", {"algo": "rhel", "scan": "parallel"},
     dict(integrator=he.AffineLeapfrog())),
    ("rhel_f32_core_input", None, "float32", {"algo": "rhel", "core_dtype": "input"},
     dict(integrator=he.Leapfrog(dtype="input"))),
    ("rhel_f32_core_float64", None, "float32", {"algo": "rhel", "core_dtype": "float64"},
     dict(integrator=he.Leapfrog(dtype="float64"))),
    ("bptt_f32_core_input", None, "float32", {"algo": "bptt", "core_dtype": "input"},
     dict(gradient=he.BPTT(), integrator=he.Leapfrog(dtype="input"))),
    ("bptt_f32_core_float64", None, "float32", {"algo": "bptt", "core_dtype": "float64"},
     dict(gradient=he.BPTT(), integrator=he.Leapfrog(dtype="float64"))),
    ("rhel_fixed_point", None, "float64", {"algo": "rhel", "integrator": "fixed_point", "fraction_bits": 40},
     dict(integrator=he.FixedPointLeapfrog(fraction_bits=40))),
    ("rhel_fixed_point_one", None, "float64",
     {"algo": "rhel", "integrator": "fixed_point", "fraction_bits": 40, "estimator": "one_sided", "eps": 0.01},
     dict(gradient=he.RHEL(eps=0.01, estimator="one_sided"), integrator=he.FixedPointLeapfrog(fraction_bits=40))),
    ("bptt_recompute", None, "float64", {"algo": "bptt", "recompute_blocks": True},
     dict(gradient=he.BPTT(), memory=he.RecomputeBlocks())),
    ("rhel_recompute", None, "float64", {"algo": "rhel", "recompute_blocks": True},
     dict(memory=he.RecomputeBlocks())),
    ("bptt_block_chunk", None, "float64", {"algo": "bptt", "block_chunk": 5},
     dict(gradient=he.BPTT(), memory=he.TimeChunks(5))),
    ("rhel_block_chunk", None, "float64", {"algo": "rhel", "block_chunk": 5}, dict(memory=he.TimeChunks(5))),
]
# The strategy objects of each case, by name.
CHOICES = {name: choices for name, _, _, _, choices in CASES}


def case_names() -> list[str]:
    """Every recorded case, as "<hru>/<name>", in recording order."""
    return [f"{hru}/{name}" for hru in HRUS for name, only, *_ in CASES if only in (None, hru)]


def problem(hru: str, dtype: str):
    """The model, x (BATCH, LENGTH, IN_DIM) and labels y every case of ``hru`` starts from."""
    model = he.HSSM(in_dim=IN_DIM, out_dim=CLASSES, hidden=6, state=3, blocks=2, hru=hru,
                    step=0.3 if hru == "nonlinear" else 1e-4, dtype=dtype, key=jax.random.PRNGKey(7))
    x = jax.random.normal(jax.random.PRNGKey(8), (BATCH, LENGTH, IN_DIM), dtype)
    return model, x, jnp.array([0, 3, 1])


def retrace_input(dtype: str):
    """The input (LENGTH, BATCH, hidden) of the retrace error of the first block's HRU."""
    return jax.random.normal(jax.random.PRNGKey(9), (LENGTH, BATCH, 6), dtype)


def leaves(tree) -> list[np.ndarray]:
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_array))]


def record_case(case: str) -> tuple[dict[str, np.ndarray], dict]:
    """(the arrays of ``case``, its golden.json entry)."""
    hru, name = case.split("/")
    _, _, dtype, keywords, choices = next(entry for entry in CASES if entry[0] == name)
    model, x, y = problem(hru, dtype)
    loss, grads = he.value_and_grad(model, x, y, **choices)
    arrays = {f"{case}/loss": np.asarray(loss)}
    grad_leaves = leaves(grads)
    arrays.update({f"{case}/grad{i:03d}": leaf for i, leaf in enumerate(grad_leaves)})
    optimizer = optax.adam(1e-2)
    stepped, _, step_loss = he.train_step(model, he.init_optimizer(optimizer, model), x, y, optimizer,
                                          key=jax.random.PRNGKey(3), **choices)
    arrays[f"{case}/step_loss"] = np.asarray(step_loss)
    arrays.update({f"{case}/step{i:03d}": leaf for i, leaf in enumerate(leaves(stepped))})
    layer = model.blocks[0].hru
    arrays[f"{case}/retrace"] = np.asarray(he.retrace_error(layer, retrace_input(dtype),
                                                            integrator=choices.get("integrator")))
    return arrays, {"options": keywords, "dtype": dtype, "grads": len(grad_leaves)}


def record_predict(hru: str) -> dict[str, np.ndarray]:
    """``predict`` of the untrained float64 model (its statistics never updated: it warns, on purpose)."""
    import warnings

    model, x, _ = problem(hru, "float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return {f"{hru}/predict": np.asarray(he.predict(model, x))}


def record(out: Path = HERE, cases: list[str] | None = None, *,
           merge: bool = False) -> tuple[dict[str, np.ndarray], dict]:
    """Record ``cases`` (default: all) and the predictions of their HRUs into ``out``/golden.npz and
    ``out``/golden.json; returns (arrays, index). Needs JAX's x64 mode (float64 models).

    ``merge``: replace only the arrays of ``cases`` in the files already at ``out`` and keep every other
    array and index entry as stored, bit for bit (the predictions too: they depend on no case)."""
    if not jax.config.jax_enable_x64:
        raise ValueError("the golden cases need JAX's x64 mode: jax.config.update('jax_enable_x64', True)")
    cases = case_names() if cases is None else list(cases)
    unknown = sorted(set(cases) - set(case_names()))
    if unknown:
        raise ValueError(f"unknown case {unknown[0]!r}; the cases are {', '.join(case_names())}")
    arrays, index = {}, {}
    for case in cases:
        case_arrays, index[case] = record_case(case)
        arrays.update(case_arrays)
    for hru in HRUS:
        if any(case.startswith(f"{hru}/") for case in cases):
            arrays.update(record_predict(hru))
    if merge:
        with np.load(out / "golden.npz") as archive:
            stored = dict(archive)
        stored_index = json.loads((out / "golden.json").read_text())
        recorded = {name for name in arrays if name.rsplit("/", 1)[0] in cases}
        arrays = {**{name: arrays[name] if name in recorded else value for name, value in stored.items()},
                  **{name: arrays[name] for name in recorded if name not in stored}}
        index = {**stored_index, **index}
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "golden.npz", **arrays)
    (out / "golden.json").write_text(json.dumps(index, indent=1) + "\n")
    return arrays, index


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Record the golden outputs of tests/test_golden.py.")
    parser.add_argument("cases", nargs="*", help="cases such as nonlinear/rhel_auto (default: all)")
    parser.add_argument("--out", type=Path, default=HERE, help="folder for golden.npz and golden.json")
    parser.add_argument("--merge", action="store_true",
                        help="replace only the named cases in the files at --out, every other array kept as stored")
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    arrays, index = record(args.out, args.cases or None, merge=args.merge)
    print(f"{len(index)} cases, {len(arrays)} arrays -> {args.out / 'golden.npz'}")


if __name__ == "__main__":
    main()
