"""``hamecho demo ...``: small self-contained demonstrations that write figures (``hamecho.tools.demo``)."""
from __future__ import annotations

import json
import sys

from ..tools import demo
from .arguments import defaults_of


def add_command(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="run a demonstration and write its figures",
        description="Run a demonstration and write its figures.")
    demos = parser.add_subparsers(dest="demo", metavar="DEMO")
    demos.required = True

    default = defaults_of(demo.run_oscillators)
    osc = demos.add_parser(
        "oscillators",
        help="continuous-time RHEL vs adjoint on six coupled harmonic oscillators",
        description=(
            "Six coupled harmonic oscillators (masses, springs, all-pairs couplings; 27 "
            "parameters). Compares the RHEL gradient with the adjoint method and with autodiff "
            "through the discretised forward pass, trains with RHEL and with the adjoint for the "
            "same number of steps, and writes figures."))
    osc.add_argument("--out", default=default["out"], help="output folder (created)")
    osc.add_argument("--json", action="store_true",
                     help="print one JSON object with the measured errors on stdout")
    osc.add_argument("--steps", type=int, default=default["steps"], help="training steps (each method)")
    osc.add_argument("--lr", type=float, default=default["lr"], help="Adam learning rate")
    osc.add_argument("--T", type=float, default=default["T"], help="time horizon T (forward on [-T, 0])")
    osc.add_argument("--n-steps", type=int, default=default["n_steps"], help="integrator steps over [-T, 0]")
    osc.add_argument("--eps", type=float, nargs="+", default=list(default["eps"]),
                     help="nudging strengths compared; the smallest is used for training and "
                          "for the reported errors")
    osc.add_argument("--nudge", choices=("forward", "echo"), default=default["nudge"],
                     help="where the echo reads d(loss)/d(phi): on the forward trajectory "
                          "(linearised nudge, default) or on the echo itself")
    osc.add_argument("--anharmonic", type=float, default=default["anharmonic"],
                     help="quartic spring strength (0: the paper's linear toy)")
    osc.add_argument("--seed", type=int, default=default["seed"], help="seed of the initial parameters")
    osc.add_argument("--no-animation", action="store_true", help="skip the animation")
    osc.set_defaults(func=oscillators)


def oscillators(args) -> int:
    def log(message: str) -> None:
        print(message, file=sys.stderr if args.json else sys.stdout, flush=True)

    report = demo.run_oscillators(args.out, steps=args.steps, lr=args.lr, T=args.T, n_steps=args.n_steps,
                                  eps=args.eps, nudge=args.nudge, anharmonic=args.anharmonic, seed=args.seed,
                                  animation=not args.no_animation, progress=sys.stdout.isatty() and not args.json,
                                  log=log)
    if args.json:
        print(json.dumps(report))
    return 0
