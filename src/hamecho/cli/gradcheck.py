"""``hamecho gradcheck``: RHEL against float64 BPTT gradients on a random HSSM (``hamecho.tools.gradcheck``)."""
from __future__ import annotations

import json
import sys

from ..core.gradients import DIFFERENCES, ESTIMATORS
from ..core.integrators import CORE_DTYPES
from ..nn.hssm import TASKS
from ..nn.layers import HRU_KINDS
from ..tools import gradcheck as gc
from .arguments import defaults_of, positive_float, positive_floats, positive_int


def add_command(subparsers) -> None:
    parser = subparsers.add_parser(
        "gradcheck", help="compare RHEL and BPTT gradients on a random HSSM",
        description="Build a random HSSM and batch, compute RHEL gradients (in --dtype) and float64 BPTT "
                    "gradients, and print per block and per array: cosine similarity, norm ratio "
                    "|g_RHEL|/|g_BPTT| and max relative error max|g - r|/max|r|. With --dtype float32 "
                    "float32 BPTT is shown against the same float64 reference (the floor).")
    default = defaults_of(gc.prepare_problem, gc.run_gradcheck)
    parser.add_argument("--hru", choices=tuple(HRU_KINDS), default=default["hru"])
    parser.add_argument("--task", choices=TASKS, default=default["task"])
    parser.add_argument("--blocks", type=positive_int, default=default["blocks"])
    parser.add_argument("--hidden", type=positive_int, default=default["hidden"])
    parser.add_argument("--state", type=positive_int, default=default["state"])
    parser.add_argument("--length", type=positive_int, default=default["length"])
    parser.add_argument("--batch", type=positive_int, default=default["batch"])
    parser.add_argument("--in-dim", type=positive_int, default=default["in_dim"])
    parser.add_argument("--classes", type=positive_int, default=default["classes"],
                        help="classes (classification) or targets per kept step (regression)")
    parser.add_argument("--output-step", type=positive_int, default=default["output_step"],
                        help="regression: read every k-th step (default 1)")
    parser.add_argument("--step", type=positive_float, default=default["step"],
                        help="nonlinear HRU's initial step size delta (paper: 1e-4)")
    parser.add_argument("--dtype", choices=gc.DTYPES, default=default["dtype"])
    parser.add_argument("--eps", type=positive_float, default=default["eps"], help="nudge strength epsilon")
    parser.add_argument("--estimator", choices=ESTIMATORS, default=default["estimator"])
    parser.add_argument("--difference", choices=DIFFERENCES, default=default["difference"],
                        help="how the two echoes' energy gradients are differenced (see core/choices.py; auto: "
                             "quadrature, the accurate one; direct: subtract, as a physical system would)")
    parser.add_argument("--core-dtype", choices=CORE_DTYPES, default=default["core_dtype"],
                        help="precision of the Hamiltonian cores: auto = float64 (x64 is on here), "
                             "input = the model's dtype (see hamecho.core.choices.compute_dtype)")
    parser.add_argument("--seed", type=int, default=default["seed"])
    parser.add_argument("--sweep", choices=tuple(gc.SWEEP_DEFAULTS),
                        help="sweep eps or length (float32 and float64 RHEL, float32 BPTT floor) and print "
                             "the worst cosine / norm ratio / rel err per value instead of per array")
    parser.add_argument("--values", type=positive_floats,
                        help="comma-separated sweep values (default eps: 1e-4,1e-3,1e-2,0.1,1; "
                             "length: 250,1000,4000)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--plot", metavar="FILE.png", help="write cosine / norm-ratio bars per array")
    parser.set_defaults(func=main)


def _problem_args(args) -> dict:
    return dict(hru=args.hru, blocks=args.blocks, hidden=args.hidden, state=args.state, length=args.length,
                batch=args.batch, in_dim=args.in_dim, classes=args.classes, task=args.task,
                output_step=args.output_step, step=args.step, seed=args.seed)


def main_sweep(args) -> int:
    values = args.values or gc.SWEEP_DEFAULTS[args.sweep]
    if args.sweep == "length":
        values = [int(v) for v in values]
    progress = None if args.json else (lambda row: print(f"  {args.sweep} = {row['value']:g} ({row['dtype']}) done",
                                                          file=sys.stderr))
    rows = gc.run_sweep(args.sweep, values, eps=args.eps, estimator=args.estimator, difference=args.difference,
                        core_dtype=args.core_dtype, progress=progress, **_problem_args(args))
    config = {**_problem_args(args), "eps": args.eps, "core_dtype": args.core_dtype, "sweep": args.sweep}
    if args.plot:
        gc.plot_sweep(rows, args.plot, f"RHEL vs float64 BPTT: {args.hru} HSSM, {args.blocks} blocks, "
                                       + (f"L = {args.length}" if args.sweep == "eps" else f"eps = {args.eps}"))
    if args.json:
        json.dump({"sweep": rows, "config": config}, sys.stdout)
        sys.stdout.write("\n")
    else:
        print(gc.format_sweep(rows))
        if args.plot:
            print(f"plot written to {args.plot}")
    return 0


def main(args) -> int:
    if args.sweep:
        return main_sweep(args)
    report = gc.run_gradcheck(dtype=args.dtype, eps=args.eps, estimator=args.estimator, difference=args.difference,
                              core_dtype=args.core_dtype, **_problem_args(args))
    if args.plot:
        gc.plot_report(report, args.plot)
    if args.json:
        json.dump(report, sys.stdout)
        sys.stdout.write("\n")
    else:
        c = report["config"]
        print(f"RHEL ({c['dtype']}, eps = {c['eps']}) vs BPTT (float64): {c['hru']} HSSM, {c['blocks']} blocks, "
              f"hidden {c['hidden']}, state {c['state']}, L = {c['length']}, batch {c['batch']}, {c['task']}")
        print(gc.format_table(report))
        if args.plot:
            print(f"plot written to {args.plot}")
    return 0
