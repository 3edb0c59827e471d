"""RHEL-vs-BPTT gradient alignment and precision diagnostics (the library of ``hamecho gradcheck``).

For every trainable array of an HSSM we compare the RHEL gradient g with a reference BPTT gradient
r (autodiff through the same forward pass):

    cosine     = g·r / (|g| |r|)
    norm_ratio = |g| / |r|
    rel_err    = max|g − r| / max|r|        (max-norm relative error of the whole array)

The reference is BPTT in float64 of the same model and batch (for a float32 run: the float32
parameters and inputs, widened to float64). For a float32 run, all-float32 BPTT (its Hamiltonian
cores included) is compared with the same reference too ("floor" columns): what plain float32
autodiff achieves. RHEL's cores run in float64 by default (``AutoLeapfrog(dtype=core_dtype)``, "auto"),
so RHEL can beat that floor.
"""
from __future__ import annotations

import inspect
import math
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..core.choices import AutoLeapfrog
from ..core.gradients import BPTT, RHEL
from ..nn.hssm import trainable
from ..training.config import DTYPES

__all__ = ["DTYPES", "SWEEP_DEFAULTS", "compare_arrays", "compare_gradients", "format_sweep", "format_table",
           "named_arrays", "plot_report", "plot_sweep", "prepare_problem", "random_problem", "rhel_against_reference",
           "run_gradcheck", "run_sweep", "summarize"]


# --- comparing gradients ----------------------------------------------------------------------------

def _path_name(path) -> tuple[int | None, str]:
    """Tree path of a model leaf → (block index or None, dotted name such as 'hru.B')."""
    block, parts = None, []
    for entry in path:
        if isinstance(entry, jax.tree_util.GetAttrKey):
            parts.append(entry.name)
        elif isinstance(entry, jax.tree_util.DictKey):
            parts.append(str(entry.key))
        elif isinstance(entry, jax.tree_util.SequenceKey):
            if parts and parts[-1] == "blocks":
                parts.pop()
                block = int(entry.idx)
            else:
                parts.append(str(entry.idx))
    parts = [p for p in parts if p != "theta"]
    return block, ".".join(parts)


def named_arrays(tree) -> list[tuple[int | None, str, np.ndarray]]:
    """Trainable arrays of an HSSM (or of its gradient) with (block, name), in float64: the arrays
    ``hamecho.nn.hssm.trainable`` selects (norm statistics excluded)."""
    leaves = jax.tree_util.tree_flatten_with_path(eqx.filter(tree, trainable(tree)))[0]
    return [(*_path_name(path), np.asarray(leaf, dtype=np.float64)) for path, leaf in leaves]


def compare_arrays(grad: np.ndarray, reference: np.ndarray) -> dict:
    """cosine, norm_ratio and rel_err of one gradient array against its reference."""
    g, r = grad.ravel(), reference.ravel()
    g_norm, r_norm = float(np.linalg.norm(g)), float(np.linalg.norm(r))
    if r_norm == 0.0:
        same = g_norm == 0.0
        return {"cosine": 1.0 if same else 0.0, "norm_ratio": 1.0 if same else math.inf,
                "rel_err": 0.0 if same else math.inf}
    cosine = float(g @ r) / (g_norm * r_norm) if g_norm > 0 else 0.0
    rel_err = float(np.max(np.abs(g - r)) / np.max(np.abs(r)))
    return {"cosine": cosine, "norm_ratio": g_norm / r_norm, "rel_err": rel_err}


def compare_gradients(grads, reference) -> list[dict]:
    """One row {block, name, cosine, norm_ratio, rel_err} per trainable array."""
    rows = []
    for (block, name, g), (_, _, r) in zip(named_arrays(grads), named_arrays(reference), strict=True):
        rows.append({"block": block, "name": name, **compare_arrays(g, r)})
    return rows


# --- the check --------------------------------------------------------------------------------------

def random_problem(*, hru: str, blocks: int, hidden: int, state: int, length: int, batch: int, in_dim: int,
                   classes: int, task: str, output_step: int, step: float, seed: int, dtype, norm: str = "batch"):
    """A random HSSM (with ``norm``) and a random batch (x, y) of the given shapes, in ``dtype``."""
    from ..nn.hssm import HSSM

    model_key, x_key, y_key = jax.random.split(jax.random.PRNGKey(seed), 3)
    model = HSSM(in_dim=in_dim, out_dim=classes, hidden=hidden, state=state, blocks=blocks, hru=hru,
                 task=task, output_step=output_step, step=step, dtype=dtype, norm=norm, key=model_key)
    x = jax.random.normal(x_key, (batch, length, in_dim), dtype)
    if task == "classification":
        y = jax.random.randint(y_key, (batch,), 0, classes)
    else:
        y = jax.random.uniform(y_key, (batch, length // output_step, classes), dtype, -1.0, 1.0)
    return model, x, y


def prepare_problem(*, hru="linear", blocks=3, hidden=16, state=8, length=1000, batch=4, in_dim=3, classes=5,
                    task="classification", output_step=1, step=1e-4, dtype="float64", seed=0) -> dict:
    """A random problem in ``dtype`` with its float64 BPTT reference gradient (and, for float32, the
    all-float32 BPTT floor rows). Switches JAX's x64 mode on (needed for the reference)."""
    from ..nn.api import value_and_grad
    from ..nn.hssm import cast

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(map(repr, DTYPES))}; got {dtype!r}")
    jax.config.update("jax_enable_x64", True)
    model64, x64, y = random_problem(hru=hru, blocks=blocks, hidden=hidden, state=state, length=length,
                                     batch=batch, in_dim=in_dim, classes=classes, task=task,
                                     output_step=output_step, step=step, seed=seed, dtype=jnp.float64)
    if dtype == "float32":
        # The reference is the float64 gradient of the *same* model: the float32-rounded parameters and
        # inputs, widened back. (Rounding A and delta to float32 shifts an oscillator's phase by an amount
        # that grows with L, which on long sequences moves the exact gradient visibly: that is a different
        # model, not an error of the float32 computation.)
        model, x = cast(model64, jnp.float32), x64.astype(jnp.float32)
        model64, x64 = cast(model, jnp.float64), x.astype(jnp.float64)
    else:
        model, x = model64, x64
    y_run = y if task == "classification" else y.astype(x.dtype)
    start = time.perf_counter()
    _, reference = jax.block_until_ready(value_and_grad(model64, x64, y, gradient=BPTT()))
    timing = {"bptt_float64": time.perf_counter() - start}
    floor_rows = None
    if dtype == "float32":
        start = time.perf_counter()
        _, floor = jax.block_until_ready(value_and_grad(model, x, y_run, gradient=BPTT(),
                                                               integrator=AutoLeapfrog(dtype="input")))
        timing["bptt_float32"] = time.perf_counter() - start
        floor_rows = compare_gradients(floor, reference)
    return {"model": model, "x": x, "y": y_run, "reference": reference, "floor_rows": floor_rows,
            "timing_s": timing}


def rhel_against_reference(problem: dict, *, gradient: RHEL | None = None, integrator=None) -> dict:
    """Rows comparing ``gradient`` (an ``RHEL``; default ``RHEL()``) with the problem's reference, the
    retrace error of the cores run by ``integrator`` (default ``AutoLeapfrog()``) and the RHEL time."""
    from ..nn.api import value_and_grad

    model, x = problem["model"], problem["x"]
    start = time.perf_counter()
    _, rhel = jax.block_until_ready(value_and_grad(model, x, problem["y"], gradient=gradient, integrator=integrator))
    elapsed = time.perf_counter() - start
    rows = compare_gradients(rhel, problem["reference"])
    if problem["floor_rows"] is not None:
        for row, floor_row in zip(rows, problem["floor_rows"], strict=True):
            row.update({f"floor_{k}": floor_row[k] for k in ("cosine", "norm_ratio", "rel_err")})
    retrace = max(float(block.hru.retrace_error(u, integrator=integrator))
                  for block, u in zip(model.blocks, model.hru_inputs(x)))
    return {"params": rows, "retrace_error": retrace, "rhel_s": elapsed}


def run_gradcheck(*, eps=RHEL.eps, estimator=RHEL.estimator, difference=RHEL.difference,
                  core_dtype=AutoLeapfrog.dtype, **problem_config) -> dict:
    """Build a random problem, compute RHEL (in ``dtype``) and float64 BPTT, and compare them.

    ``problem_config``: the keyword arguments of ``prepare_problem`` (shapes, hru, task, dtype, seed).
    Returns {"params": rows, "retrace_error": float, "config": {...}, "timing_s": {...}}; with
    dtype float32 every row also carries the floor (all-float32 BPTT vs the float64 reference) as
    floor_cosine, floor_norm_ratio, floor_rel_err.
    """
    problem = prepare_problem(**problem_config)
    result = rhel_against_reference(problem, gradient=RHEL(eps, estimator, difference),
                                    integrator=AutoLeapfrog(dtype=core_dtype))
    defaults = {k: v.default for k, v in inspect.signature(prepare_problem).parameters.items()}
    config = {**defaults, **problem_config, "eps": eps, "estimator": estimator, "difference": difference,
              "core_dtype": core_dtype, "backend": jax.default_backend()}
    timing = {**problem["timing_s"], "rhel": result["rhel_s"]}
    return {"params": result["params"], "retrace_error": result["retrace_error"], "config": config,
            "timing_s": timing}


def summarize(rows: list[dict], prefix: str = "") -> dict:
    """Worst cosine, worst |norm ratio − 1| and worst rel err over all arrays."""
    return {"min_cosine": min(r[f"{prefix}cosine"] for r in rows),
            "max_norm_ratio_dev": max(abs(r[f"{prefix}norm_ratio"] - 1.0) for r in rows),
            "max_rel_err": max(r[f"{prefix}rel_err"] for r in rows)}


SWEEP_DEFAULTS = {"eps": (1e-4, 1e-3, 1e-2, 0.1, 1.0), "length": (250, 1000, 4000)}


def run_sweep(kind: str, values, *, eps=RHEL.eps, estimator=RHEL.estimator, difference=RHEL.difference,
              core_dtype=AutoLeapfrog.dtype, progress=None, **problem_config) -> list[dict]:
    """Summaries of RHEL (float32 and float64) and of all-float32 BPTT, against ε or against L.

    One row per (value, dtype): {"sweep", "value", "dtype", "min_cosine", "max_norm_ratio_dev",
    "max_rel_err", "retrace_error"} plus "floor_*" (float32 rows). The reference gradient of each
    length is computed once.
    """
    if kind not in SWEEP_DEFAULTS:
        raise ValueError(f"sweep must be one of {', '.join(map(repr, SWEEP_DEFAULTS))}; got {kind!r}")
    problem_config = {k: v for k, v in problem_config.items() if k != "dtype"}
    rows = []
    lengths = values if kind == "length" else [problem_config.pop("length", 1000)]
    problem_config.pop("length", None)
    for length in lengths:
        for dtype in DTYPES:
            problem = prepare_problem(length=int(length), dtype=dtype, **problem_config)
            for eps_value in (values if kind == "eps" else [eps]):
                result = rhel_against_reference(problem, gradient=RHEL(float(eps_value), estimator, difference),
                                                integrator=AutoLeapfrog(dtype=core_dtype))
                row = {"sweep": kind, "value": float(eps_value) if kind == "eps" else int(length),
                       "dtype": dtype, "length": int(length), "eps": float(eps_value),
                       **summarize(result["params"]), "retrace_error": result["retrace_error"]}
                if problem["floor_rows"] is not None:
                    row.update({f"floor_{k}": v for k, v in summarize(problem["floor_rows"]).items()})
                rows.append(row)
                if progress is not None:
                    progress(row)
    return rows


# --- output -----------------------------------------------------------------------------------------

def format_table(report: dict) -> str:
    """A plain-text table of the report, one line per array, grouped by block."""
    floor = "floor_cosine" in report["params"][0]
    header = f"{'block':>5}  {'array':<20} {'cosine':>12} {'norm ratio':>12} {'rel err':>10}"
    if floor:
        header += f"   {'f32 BPTT cos':>12} {'norm ratio':>10} {'rel err':>9}"
    lines = [header, "-" * len(header)]
    for row in report["params"]:
        block = "-" if row["block"] is None else str(row["block"])
        line = (f"{block:>5}  {row['name']:<20} {row['cosine']:>12.9f} {row['norm_ratio']:>12.9f} "
                f"{row['rel_err']:>10.2e}")
        if floor:
            line += f"   {row['floor_cosine']:>12.9f} {row['floor_norm_ratio']:>10.7f} {row['floor_rel_err']:>9.2e}"
        lines.append(line)
    worst = min(report["params"], key=lambda r: r["cosine"])
    lines.append("")
    lines.append(f"worst cosine {worst['cosine']:.9f} ({worst['name']}, block {worst['block']}); "
                 f"max rel err {max(r['rel_err'] for r in report['params']):.2e}; "
                 f"echo retrace error (eps = 0) {report['retrace_error']:.2e}")
    return "\n".join(lines)


def plot_report(report: dict, path: str) -> None:
    """Bars of cosine and norm ratio per array (grouped by block) into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["params"]
    labels = [r["name"] if r["block"] is None else f"b{r['block']}.{r['name']}" for r in rows]
    positions = np.arange(len(rows))
    fig, axes = plt.subplots(2, 1, figsize=(max(8, 0.28 * len(rows)), 6), sharex=True)
    for ax, key, ylabel in ((axes[0], "cosine", "cosine(RHEL, BPTT f64)"),
                            (axes[1], "norm_ratio", "|g_RHEL| / |g_BPTT|")):
        values = np.array([r[key] for r in rows])
        ax.bar(positions, values, color="tab:blue", label="RHEL")
        if f"floor_{key}" in rows[0]:
            ax.plot(positions, [r[f"floor_{key}"] for r in rows], "k_", markersize=10, label="float32 BPTT")
            ax.legend(loc="lower right")
        ax.axhline(1.0, color="grey", lw=0.8)
        span = max(np.max(np.abs(values - 1.0)), 1e-12)
        ax.set_ylim(1.0 - 1.5 * span, 1.0 + 1.5 * span if key == "norm_ratio" else 1.0 + 0.1 * span)
        ax.set_ylabel(ylabel)
    axes[1].set_xticks(positions, labels, rotation=90, fontsize=7)
    c = report["config"]
    fig.suptitle(f"RHEL vs BPTT: {c['hru']} HSSM, {c['blocks']} blocks, L = {c['length']}, "
                 f"{c['dtype']}, eps = {c['eps']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def format_sweep(rows: list[dict]) -> str:
    kind = rows[0]["sweep"]
    header = (f"{kind:>8} {'dtype':>8} {'min cosine':>14} {'max|ratio-1|':>13} {'max rel err':>11} {'retrace':>9}"
              f"   {'f32 BPTT cos':>14} {'max|ratio-1|':>13}")
    lines = [header, "-" * len(header)]
    for r in rows:
        line = (f"{r['value']:>8g} {r['dtype']:>8} {r['min_cosine']:>14.10f} {r['max_norm_ratio_dev']:>13.2e} "
                f"{r['max_rel_err']:>11.2e} {r['retrace_error']:>9.1e}")
        if "floor_min_cosine" in r:
            line += f"   {r['floor_min_cosine']:>14.10f} {r['floor_max_norm_ratio_dev']:>13.2e}"
        lines.append(line)
    return "\n".join(lines)


def plot_sweep(rows: list[dict], path: str, title: str = "") -> None:
    """1 − min cosine and max |norm ratio − 1| against the swept variable (log-log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kind = rows[0]["sweep"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    tiny = 1e-17
    for ax, key, label in ((axes[0], "min_cosine", "1 − min cosine"),
                           (axes[1], "max_norm_ratio_dev", "max |norm ratio − 1|")):
        transform = (lambda v: max(1.0 - v, tiny)) if key == "min_cosine" else (lambda v: max(v, tiny))
        for dtype, style in (("float64", "o-"), ("float32", "s-")):
            sel = [r for r in rows if r["dtype"] == dtype]
            ax.plot([r["value"] for r in sel], [transform(r[key]) for r in sel], style, label=f"RHEL {dtype}")
        floor = [r for r in rows if "floor_" + key in r]
        if floor:
            ax.plot([r["value"] for r in floor], [transform(r["floor_" + key]) for r in floor], "k--",
                    label="BPTT all-float32")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("ε" if kind == "eps" else "sequence length L")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title or f"RHEL vs float64 BPTT against {kind}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
