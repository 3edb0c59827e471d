"""``hamecho run`` (``make run``): the main job, RHEL vs BPTT on JapaneseVowels (``hamecho.tools.mainjob``)."""
from __future__ import annotations

import sys

from ..tools.mainjob import DEFAULT_CONFIGS, DEFAULT_OUT, LONGRANGE_LENGTH, MEMORY_LENGTH, run_main
from ..training import Interrupted
from .arguments import non_negative_int


def add_command(subparsers) -> None:
    parser = subparsers.add_parser(
        "run", help="the main job: RHEL vs BPTT on JapaneseVowels, tables and plots (make run)",
        description="Train linear and nonlinear HSSMs with BPTT and RHEL on a real offline dataset (same seeds, "
                    "steps and model for both), print the comparison and gradient-alignment tables, write the "
                    "report and plots, then measure one training step per memory strategy (BPTT, BPTT with time "
                    "chunks, RHEL streaming) at a long sequence, peak memory side by side, and train the first-5 % "
                    "task at a long length by RHEL + Streaming and BPTT + TimeChunks. Finished runs in OUT "
                    "are reused; interrupted ones resume.")
    parser.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS), metavar="CONFIG.toml")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"results folder (default {DEFAULT_OUT})")
    parser.add_argument("--seeds", type=int, nargs="+", help="override the configs' seeds")
    parser.add_argument("--steps", type=int, help="override the configs' steps (quick trial runs)")
    parser.add_argument("--no-gradcheck", action="store_true")
    parser.add_argument("--memory-length", type=non_negative_int, default=MEMORY_LENGTH, metavar="L",
                        help=f"sequence length of the memory part (default {MEMORY_LENGTH:,}; 0: skip it)")
    parser.add_argument("--longrange-length", type=non_negative_int, default=LONGRANGE_LENGTH, metavar="L",
                        help=f"sequence length of the long-range part (default {LONGRANGE_LENGTH:,}; 0: skip it)")
    parser.set_defaults(func=main)


def main(args) -> int:
    try:
        run_main(args.configs, out=args.out, seeds=args.seeds, steps=args.steps, gradcheck=not args.no_gradcheck,
                 memory_length=args.memory_length or None, longrange_length=args.longrange_length or None)
    except Interrupted as stop:
        print(f"hamecho run: {stop}; run it again to continue from there", file=sys.stderr)
        return 130
    return 0
