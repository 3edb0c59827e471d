"""``hamecho robustness``: RHEL on a simulated imperfect device, one knob at a time (library:
``hamecho.tools.robustness``; the results are discussed in docs/physical.md)."""
from __future__ import annotations

import argparse
import shlex


def _run(args: argparse.Namespace) -> int:
    from ..tools import robustness as rb

    command = command_line(args)
    settings = rb.quick_settings() if args.quick else {}
    if args.no_train:
        settings["training"] = None
    elif not args.quick and (args.dataset or args.steps or args.seeds):
        base = rb.TrainingSetup()
        settings["training"] = rb.TrainingSetup(
            dataset=args.dataset or base.dataset, steps=args.steps or base.steps,
            seeds=tuple(args.seeds) if args.seeds else base.seeds)
    knobs = tuple(args.knobs) if args.knobs is not None else rb.KNOBS
    result = rb.robustness(knobs=knobs, problems=tuple(args.problems or rb.PROBLEMS), command=command,
                           show_progress=None if not args.no_progress else False, **settings)
    for path in rb.write_outputs(result, args.out, args.img_dir):
        print(path)
    return 0


def add_command(subparsers) -> None:
    from ..tools.robustness import KNOBS, PROBLEMS

    parser = subparsers.add_parser(
        "robustness", help="RHEL on a simulated imperfect device: gradient sweeps and training runs",
        description="Sweep one knob of hamecho.physical.SimulatedDevice at a time (noise, readout noise, "
                    "averaged echoes, mismatch, drift, bits, damping) for the linear and nonlinear HRU and a "
                    "2-block HSSM, comparing RHEL on the device with exact BPTT of the ideal (and, for damping, "
                    "the damped) model; then train HSSMs on the device at chosen levels. Writes robustness.json, "
                    "robustness.md and PNG plots.")
    parser.add_argument("--knobs", nargs="*", choices=KNOBS, default=None, metavar="KNOB",
                        help=f"the knobs to sweep (default: all of {', '.join(KNOBS)}; none: training only)")
    parser.add_argument("--problems", nargs="+", choices=tuple(PROBLEMS), default=None,
                        help="the gradient problems (default: all)")
    parser.add_argument("--no-train", action="store_true", help="skip the training runs")
    parser.add_argument("--dataset", default=None, help="training dataset (default uea/JapaneseVowels)")
    parser.add_argument("--steps", type=int, default=None, help="training steps per run (default 400)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="training seeds (default 0 1 2)")
    parser.add_argument("--quick", action="store_true", help="tiny settings: a smoke test of the whole pipeline")
    parser.add_argument("--out", default="benchmarks/results/physical", help="folder for the JSON and Markdown")
    parser.add_argument("--img-dir", default=None, help="folder for the PNG plots (default: --out)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=_run)


def command_line(args: argparse.Namespace) -> str:
    """The command these arguments stand for (recorded in the outputs: how they were produced)."""
    words = ["hamecho", "robustness"]
    for name in ("knobs", "problems", "seeds"):
        value = getattr(args, name)
        if value is not None:
            words += [f"--{name}", *map(str, value)]
    for name in ("dataset", "steps", "img_dir"):
        if getattr(args, name) is not None:
            words += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    words += ["--out", args.out]
    words += [f"--{flag.replace('_', '-')}" for flag in ("no_train", "quick") if getattr(args, flag)]
    return " ".join(shlex.quote(w) for w in words)
