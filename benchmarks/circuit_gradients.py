"""RHEL on an ngspice LC bank (hamecho.physical.CircuitDevice) against float64 BPTT (issue #26, docs/physical.md).

Gradient table: a 1-block and a 2-block linear HSSM (hidden 8, state 4: 8 LC tanks per sample, batch 4),
random inputs and labels, L = 100 to 2,000, for each simulator setting below; the RHEL gradient on the
circuit (ε = 10) is compared per array with BPTT through ``ExactFlow`` (the circuit's continuous-time
model; with the same series resistance for the lossy rows) and with BPTT through the model's leapfrog.

    .venv/bin/python benchmarks/circuit_gradients.py --out benchmarks/results/circuit          # ~1-2 h on 2 busy cores
    .venv/bin/python benchmarks/circuit_gradients.py --quick --out /tmp/circuit                # seconds

Training (``--train``): 3 seeds of a 2-block HSSM on JapaneseVowels with its cores in ngspice, beside the
same runs on the ideal device (the leapfrog) — sizes in ``TRAINING`` (kept small: 2 shared cores).
Writes gradients.json / training.json and a markdown table per part to --out.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

import hamecho as he  # noqa: E402
from hamecho.physical import CircuitDevice, ExactFlow, IdealDevice  # noqa: E402
from hamecho.tools.gradcheck import compare_gradients, random_problem  # noqa: E402
from hamecho.tools.robustness import TrainingSetup, compare, load_training_data, train_on_device  # noqa: E402

EPS = 10.0
# name -> CircuitDevice keywords
SETTINGS = {
    "trap h=0.1": dict(timestep=0.1),
    "trap h=0.02": dict(timestep=0.02),
    "gear h=0.02": dict(method="gear", timestep=0.02),
    "trap adaptive reltol=1e-3": dict(timestep=1.0, adaptive=True),
    "trap adaptive reltol=1e-5": dict(timestep=1.0, adaptive=True, reltol=1e-5),
    "trap h=0.02 R=1e-4": dict(timestep=0.02, series_resistance=1e-4),
    "trap h=0.02 R=1e-3": dict(timestep=0.02, series_resistance=1e-3),
    "trap h=0.02 R=1e-2": dict(timestep=0.02, series_resistance=1e-2),
    "trap h=0.02 R=1e-1": dict(timestep=0.02, series_resistance=1e-1),
}
# (length, blocks) -> settings: the full list where it is cheap, the integrators alone at the longer lengths
CASES = {(100, 1): tuple(SETTINGS), (100, 2): tuple(SETTINGS),
         (500, 1): ("trap h=0.1", "trap h=0.02", "gear h=0.02", "trap h=0.02 R=1e-3"),
         (500, 2): ("trap h=0.1", "trap h=0.02"),
         (2000, 1): ("trap h=0.1", "trap h=0.02"), (2000, 2): ("trap h=0.1",)}
TRAINING = TrainingSetup(blocks=2, hidden=8, state=4, steps=300, batch=16, lr=1e-2, eps=10.0, seeds=(0, 1, 2))
TRAINING_DEVICE = dict(timestep=0.1)


def problem(blocks: int, length: int):
    return random_problem(hru="linear", blocks=blocks, hidden=8, state=4, length=length, batch=4, in_dim=3,
                          classes=4, task="classification", output_step=1, step=0.1, seed=0, dtype=jnp.float64,
                          norm="batch")


def per_array(grads, reference) -> dict:
    rows = compare_gradients(grads, reference)
    return {"cosine_min": min(r["cosine"] for r in rows),
            "norm_ratio_worst": max((r["norm_ratio"] for r in rows), key=lambda v: abs(np.log(v))),
            "rows": [{k: r[k] for k in ("block", "name", "cosine", "norm_ratio")} for r in rows]}


def gradient_rows(cases: dict, log=print, on_row=None) -> list[dict]:
    """One row per (length, blocks, setting) of ``cases``; ``on_row(rows)`` after each (to save as it goes)."""
    rows = []
    for (length, blocks), settings in cases.items():
        model, x, y = problem(blocks, length)
        leapfrog = he.value_and_grad(model, x, y, gradient=he.BPTT())[1]
        exact = {}
        for name in settings:
            keywords = SETTINGS[name]
            resistance = keywords.get("series_resistance", 0.0)
            if resistance not in exact:
                exact[resistance] = he.value_and_grad(model, x, y, gradient=he.BPTT(),
                                                      integrator=ExactFlow(series_resistance=resistance))[1]
            start = time.perf_counter()
            grads = he.value_and_grad(model, x, y, gradient=he.RHEL(eps=EPS),
                                      integrator=CircuitDevice(**keywords))[1]
            seconds = time.perf_counter() - start
            own = exact[resistance]
            row = {"length": length, "blocks": blocks, "setting": name, "seconds": seconds,
                   "vs_exact_flow": {**compare(grads, own, model), **per_array(grads, own)},
                   "vs_ideal_exact_flow": compare(grads, exact[0.0], model),
                   "vs_leapfrog": {**compare(grads, leapfrog, model), **per_array(grads, leapfrog)}}
            rows.append(row)
            e, f = row["vs_exact_flow"], row["vs_leapfrog"]
            log(f"L={length} blocks={blocks} {name}: cos {e['cosine']:.9f} ratio {e['norm_ratio']:.6f} "
                f"min/array {e['cosine_min']:.9f} worst ratio {e['norm_ratio_worst']:.6f} | vs leapfrog cos "
                f"{f['cosine']:.6f} ratio {f['norm_ratio']:.4f} ({seconds:.1f} s)")
            if on_row is not None:
                on_row(rows)
    return rows


def convergence_rows(timesteps=(0.05, 0.01, 0.0025), log=print) -> list[dict]:
    """The worst relative error of one core array (θ, B) against ExactFlow's BPTT as the trapezoidal step h
    shrinks: a 1-block HSSM (hidden 4, state 2), L = 20, batch 2, ε = 1."""
    model, x, y = random_problem(hru="linear", blocks=1, hidden=4, state=2, length=20, batch=2, in_dim=2, classes=3,
                                 task="classification", output_step=1, step=0.1, seed=3, dtype=jnp.float64,
                                 norm="batch")
    reference = he.value_and_grad(model, x, y, gradient=he.BPTT(), integrator=ExactFlow())[1]
    rows = []
    for h in timesteps:
        grads = he.value_and_grad(model, x, y, gradient=he.RHEL(eps=1.0), integrator=CircuitDevice(timestep=h))[1]
        core = [r for r in compare_gradients(grads, reference) if r["name"] in ("hru.a", "hru.steps", "hru.B")]
        rows.append({"timestep": h, "worst_core_rel_err": max(r["rel_err"] for r in core)})
        log(f"h={h}: worst relative error of a core array {rows[-1]['worst_core_rel_err']:.2e}")
    return rows


def gradient_markdown(rows) -> str:
    lines = ["| L | blocks | setting | cosine (core) | norm ratio (core) | lowest cosine of one array | worst norm "
             "ratio of one array | vs leapfrog: cosine, norm ratio | s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        e, f = r["vs_exact_flow"], r["vs_leapfrog"]
        lines.append(f"| {r['length']} | {r['blocks']} | {r['setting']} | {e['cosine']:.9f} | "
                     f"{e['norm_ratio']:.6f} | {e['cosine_min']:.9f} | {e['norm_ratio_worst']:.6f} | "
                     f"{f['cosine']:.5f}, {f['norm_ratio']:.4f} | {r['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def training_rows(setup: TrainingSetup, log=print, on_row=None, devices=None) -> list[dict]:
    data = load_training_data(setup)
    rows = []
    runs = {"ideal": ("ideal", IdealDevice(), False), "frozen": ("ideal, no echo gradients", IdealDevice(), True),
            "circuit": ("circuit", CircuitDevice(**TRAINING_DEVICE), False)}
    for device_name, device, frozen in (runs[name] for name in devices or runs):
        for seed in setup.seeds:
            result = train_on_device(data, setup, device, seed, frozen=frozen)
            rows.append({"device": device_name, "seed": seed, **result})
            log(f"{device_name} seed {seed}: {result}")
            if on_row is not None:
                on_row(rows)
    return rows


def training_markdown(rows) -> str:
    lines = ["| device | test accuracy (on the device) | its parameters on the leapfrog model | final training loss | "
             "s per run |", "|---|---|---|---|---|"]
    for name in dict.fromkeys(r["device"] for r in rows):
        picked = [r for r in rows if r["device"] == name]

        def stat(key, picked=picked):
            return f"{np.mean([r[key] for r in picked]):.3f} ± {np.std([r[key] for r in picked]):.3f}"

        lines.append(f"| {name} | {stat('test_accuracy')} | {stat('test_accuracy_ideal')} | {stat('final_loss')} | "
                     f"{np.mean([r['seconds'] for r in picked]):.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for the JSON and markdown results")
    parser.add_argument("--quick", action="store_true", help="toy sizes: the whole pipeline in seconds")
    parser.add_argument("--train", action="store_true", help="the training runs instead of the gradient table")
    parser.add_argument("--seeds", type=int, nargs="+", help="training seeds (default: 0 1 2)")
    parser.add_argument("--devices", nargs="+", choices=("ideal", "frozen", "circuit"),
                        help="training runs to do (default: all three)")
    parser.add_argument("--convergence", action="store_true",
                        help="the error against the time step (trapezoidal) instead of the gradient table")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    log = lambda text: print(text, flush=True)
    if args.convergence:
        rows = convergence_rows((0.05, 0.01) if args.quick else (0.05, 0.01, 0.0025), log)
        (args.out / "convergence.json").write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=1))
        return 0
    if args.train:
        setup = replace(TRAINING, steps=2, seeds=(0,)) if args.quick else TRAINING
        if args.seeds:
            setup = replace(setup, seeds=tuple(args.seeds))

        def save_training(rows):
            (args.out / "training.json").write_text(json.dumps({"setup": asdict(setup), "device": TRAINING_DEVICE,
                                                                "command": " ".join(sys.argv), "rows": rows}, indent=1))
            (args.out / "training.md").write_text(training_markdown(rows))

        training_rows(setup, log, save_training, devices=args.devices)
        return 0
    cases = {(20, 1): ("trap h=0.1", "trap h=0.02 R=1e-2")} if args.quick else CASES

    def save(rows):
        (args.out / "gradients.json").write_text(json.dumps({"eps": EPS, "settings": SETTINGS,
                                                             "command": " ".join(sys.argv), "rows": rows}, indent=1))
        (args.out / "gradients.md").write_text(gradient_markdown(rows))

    gradient_rows(cases, log, save)
    return 0


if __name__ == "__main__":
    sys.exit(main())
