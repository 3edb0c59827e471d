"""``hamecho rules``: RHEL, physics-aware training and SPSA on a simulated device and a circuit, knob by knob (library:
``hamecho.tools.robustness.comparison``; the results are discussed in docs/physical.md)."""
from __future__ import annotations

import argparse
import shlex
from dataclasses import replace


def _run(args: argparse.Namespace) -> int:
    from ..tools.robustness import comparison as cmp
    from ..tools.robustness.comparison_outputs import write_comparison

    setup = cmp.quick_comparison() if args.quick else cmp.ComparisonSetup()
    changes = {}
    if args.rules is not None:
        changes["rules"] = tuple(args.rules.split(","))
    given = dict(args.levels or [])
    levels = {**setup.levels, **{knob: (level,) for knob, level in given.items()}}
    if args.knobs is not None:
        levels = {knob: levels.get(knob, cmp.COMPARISON_LEVELS[knob]) for knob in args.knobs}
    points = [p for p in setup.training_points if args.knobs is None or p[0] in args.knobs]
    changes["levels"] = levels
    changes["training_points"] = tuple((knob, given.get(knob, level)) for knob, level in points)
    if args.widths is not None:
        changes["widths"] = tuple(args.widths)
    if args.device_seeds is not None:
        changes["gradient"] = replace(setup.gradient, device_seeds=tuple(args.device_seeds))
    for name in ("passes", "seeds", "lr"):
        if getattr(args, name) is not None:
            changes[name] = tuple(args.seeds) if name == "seeds" else getattr(args, name)
    setup = replace(setup, **changes)
    result = cmp.compare_rules(setup, gradients=not args.no_gradients, train=not args.no_train,
                               command=command_line(args), show_progress=None if not args.no_progress else False)
    for path in write_comparison(result, args.out, args.img_dir):
        print(path)
    return 0


def add_command(subparsers) -> None:
    from ..tools.robustness.comparison import COMPARISON_KNOBS
    from ..tools.robustness.rules import RULES

    parser = subparsers.add_parser(
        "rules", help="RHEL vs physics-aware training vs SPSA on a simulated device and a circuit: gradients, training",
        description="Compare the learning rules a physical system can use (RHEL; physics-aware training, "
                    "Wright et al. 2022; SPSA, Spall 1992) on hamecho.physical.SimulatedDevice, one knob at a "
                    "time (noise, a wrong twin, a drifting one, bits, damping), and on LC tanks in ngspice "
                    "(CircuitDevice, knob 'circuit': the series resistance): the cosine of each rule's "
                    "gradient to the device's own gradient, SPSA's cosine against the parameter count, and "
                    "training runs given the same budget of device passes. Writes rules.json, rules.md and "
                    "PNG plots.")
    parser.add_argument("--rules", default=None, metavar="A,B,...",
                        help=f"comma-separated rules (default: all of {','.join(RULES)})")
    parser.add_argument("--knobs", nargs="+", choices=COMPARISON_KNOBS, default=None, metavar="KNOB",
                        help=f"the knobs (default: all of {', '.join(COMPARISON_KNOBS)})")
    parser.add_argument("--levels", nargs="+", type=knob_level, default=None, metavar="KNOB=LEVEL",
                        help="one level for these knobs (gradients and training), e.g. noise=0.1 damping=1")
    parser.add_argument("--widths", type=int, nargs="*", default=None,
                        help="hidden sizes of SPSA's cosine against the parameter count (default 2 4 8 16)")
    parser.add_argument("--device-seeds", type=int, nargs="+", default=None,
                        help="device seeds of the random knobs' gradients (default 0 1)")
    parser.add_argument("--passes", type=int, default=None, help="device passes per training run (default 300)")
    parser.add_argument("--lr", type=float, default=None, help="Adam's learning rate in training (default 3e-2)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="training seeds (default 0)")
    parser.add_argument("--no-train", action="store_true", help="skip the training runs")
    parser.add_argument("--no-gradients", action="store_true",
                        help="skip the gradient sweeps and SPSA's cosine against the parameter count")
    parser.add_argument("--quick", action="store_true", help="tiny settings: a smoke test of the whole pipeline")
    parser.add_argument("--out", default="benchmarks/results/rules", help="folder for the JSON and Markdown")
    parser.add_argument("--img-dir", default=None, help="folder for the PNG plots (default: --out)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=_run)


def knob_level(text: str) -> tuple:
    """``KNOB=LEVEL`` → (knob, level), the knob one of the comparison's."""
    from ..tools.robustness.comparison import COMPARISON_KNOBS

    knob, _, level = text.partition("=")
    if knob not in COMPARISON_KNOBS or not level:
        raise argparse.ArgumentTypeError(f"expected KNOB=LEVEL with KNOB one of {', '.join(COMPARISON_KNOBS)}; "
                                         f"got {text!r}")
    try:
        return knob, float(level)
    except ValueError:
        raise argparse.ArgumentTypeError(f"the level of {knob} must be a number; got {level!r}") from None


def command_line(args: argparse.Namespace) -> str:
    """The command these arguments stand for (recorded in the outputs)."""
    words = ["hamecho", "rules"]
    if args.rules is not None:
        words += ["--rules", args.rules]
    if args.levels is not None:
        words += ["--levels", *(f"{knob}={level:g}" for knob, level in args.levels)]
    for name in ("knobs", "seeds", "widths", "device_seeds"):
        if getattr(args, name) is not None:
            words += [f"--{name.replace('_', '-')}", *map(str, getattr(args, name))]
    for name in ("passes", "lr", "img_dir"):
        if getattr(args, name) is not None:
            words += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    words += ["--out", args.out]
    words += [f"--{flag.replace('_', '-')}" for flag in ("no_train", "no_gradients", "quick") if getattr(args, flag)]
    return " ".join(shlex.quote(w) for w in words)
