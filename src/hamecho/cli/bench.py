"""``hamecho bench``: time and memory of a training step, RHEL vs BPTT (``hamecho.tools.bench``)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..tools import bench
from .arguments import non_negative_int, positive_int


def add_command(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench", help="time and memory of a training step: RHEL vs BPTT (vs checkpointed BPTT)",
        description=bench.__doc__.split("\n\n")[0] + " Time is measured interleaved in one process, "
        "memory in one fresh process per case (docs/performance.md says why). Writes bench.md, bench.csv, "
        "bench.json and bench.png to --out.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    q = bench.QUICK
    parser.add_argument("--quick", action="store_true",
                        help=f"a small grid: L = {', '.join(map(str, q['lengths']))}, batch "
                             f"{', '.join(map(str, q['batches']))}, {q['reps']} timed steps, the cases "
                             f"{', '.join(q['algos'])} on the {' and '.join(q['models'])} models (the other flags "
                             "override it)")
    parser.add_argument("--algos", nargs="+", choices=bench.ALGOS)
    parser.add_argument("--models", nargs="+", choices=bench.MODELS)
    parser.add_argument("--lengths", nargs="+", type=positive_int)
    parser.add_argument("--batch", nargs="+", type=positive_int, help="batch sizes (default 4 32)")
    parser.add_argument("--reps", type=positive_int,
                        help="steps of each case's fresh process, where its peak memory is read (default 3)")
    parser.add_argument("--rounds", type=non_negative_int, default=5,
                        help="rounds of the interleaved timing: the cases of each (model, batch, L) and their "
                             "forward pass run once per round in one process, in rotating order; each row "
                             "reports the median, the range and the step's ratio to the forward pass (default 5; "
                             "0: no interleaved timing, the fresh processes' times)")
    parser.add_argument("--block-chunk", type=positive_int, default=bench.BLOCK_CHUNK,
                        help=f"time steps per chunk of the *_chunked cases (default {bench.BLOCK_CHUNK})")
    parser.add_argument("--stream-chunk", type=positive_int, default=bench.STREAM_CHUNK,
                        help=f"time steps per chunk of rhel_streaming (default {bench.STREAM_CHUNK})")
    parser.add_argument("--norm", choices=bench.NORMS,
                        help="the model's norm in every case (default: layer when rhel_streaming is in the run, "
                             "which needs it, else batch)")
    parser.add_argument("--core-dtype", choices=bench.CORE_DTYPES, default="auto",
                        help="auto: float64 cores with a float32 model (the default everywhere); input: all float32")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per case before it is skipped")
    parser.add_argument("--out", default="benchmarks/results", help="folder for bench.md/.csv/.json/.png")
    parser.add_argument("--json", action="store_true", help="print the rows as a JSON list (and write files)")
    parser.add_argument("--resume", action="store_true",
                        help="reuse the measured rows of OUT/bench.json (same case, reps and core precision); "
                             "outputs are rewritten after every case, so an interrupted grid loses nothing")
    parser.set_defaults(func=main)


def _print_row(row: dict) -> None:
    measured = (f"skipped: {row['skipped']}" if "skipped" in row else
                f"{row['step_time_s']:.3f} s/step (one fresh process), peak {row['peak_mem_bytes'] / 2**30:.2f} GiB")
    print(f"  {row['model']:>9} b{row['batch']:<3} L={row['length']:<6} {row['algo']:<14} " + measured, flush=True)


def main(args) -> int:
    quick = bench.QUICK if args.quick else {}
    algos = args.algos or quick.get("algos", bench.DEFAULT_ALGOS)
    models = args.models or quick.get("models", bench.MODELS)
    lengths = args.lengths or quick.get("lengths", bench.LENGTHS)
    batches = args.batch or quick.get("batches", bench.BATCHES)
    reps = args.reps or 3
    try:
        bench.norm_for(algos, args.norm)
    except ValueError as error:
        print(f"hamecho bench: error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out)
    previous = []
    if args.resume and (out / "bench.json").exists():
        previous = json.loads((out / "bench.json").read_text(encoding="utf-8"))
    rows = bench.run_grid(algos, models, lengths, batches, reps=reps, core_dtype=args.core_dtype, timeout=args.timeout,
                          progress=None if args.json else _print_row, previous=previous,
                          on_row=lambda rows: bench.write_outputs(rows, out), rounds=args.rounds,
                          block_chunk=args.block_chunk, norm=args.norm, stream_chunk=args.stream_chunk)
    written = bench.write_outputs(rows, out)
    if args.json:
        json.dump(rows, sys.stdout)
        sys.stdout.write("\n")
    else:
        print(bench.format_markdown(rows))
        print("written: " + ", ".join(map(str, written)))
    return 0
