"""``hamecho sweep``: a grid of (configuration, algorithm, seed) runs, locally or on Ray (``hamecho.tools.sweep``)."""
from __future__ import annotations

import sys
import time

from ..nn.keywords import ALGOS
from ..tools.sweep import build_sweep, load_sweep, pending_runs, print_selection, run_local, run_ray, select
from ..training.config import parse_override


def add_command(subparsers) -> None:
    parser = subparsers.add_parser(
        "sweep", help="run a grid of (config, algo, seed) training runs locally or on Ray",
        description="Expand configurations x algorithms x seeds into runs and execute them: a local pool of "
                    "worker processes by default, Ray tasks with --ray / --ray-address. Finished runs are "
                    "skipped and interrupted ones resume from their checkpoints, so a sweep can be stopped and "
                    "started again at will. Results go where `hamecho report` reads them. The sweep file "
                    "format is described in the module docstring of hamecho.tools.sweep and in docs/training.md.")
    parser.add_argument("spec", nargs="?", metavar="SPEC.toml", help="sweep file (optional with --config)")
    parser.add_argument("--config", nargs="+", metavar="CONFIG.toml", help="configuration files or globs")
    parser.add_argument("--algos", nargs="+", choices=ALGOS)
    parser.add_argument("--seeds", nargs="+", type=int)
    parser.add_argument("--out", help="results folder for every run")
    parser.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                        help="override a config key in every run (TOML literal), e.g. --set train.steps=500")
    parser.add_argument("--workers", type=int,
                        help="local pool size (default 1); with --ray and no address, the CPUs of the local Ray "
                             "instance (default: all)")
    parser.add_argument("--ray", action="store_true", help="run on Ray (a local instance unless --ray-address)")
    parser.add_argument("--ray-address", help="address of an existing Ray cluster (implies --ray)")
    parser.add_argument("--cpus-per-run", type=float, help="Ray: CPUs reserved per run (default 1)")
    parser.add_argument("--gpus-per-run", type=float, help="Ray: GPUs reserved per run (default 0)")
    parser.add_argument("--retries", type=int, help="re-runs of a run whose worker died (default 3)")
    parser.add_argument("--search", action="append", metavar="paper|SECTION.KEY=V1,V2,...",
                        help="hyperparameter search: 'paper' (the peers' grid: lr, time channel, hidden, blocks, "
                             "state; 162 combinations) or one key with its values, repeatable, e.g. "
                             "--search train.lr=1e-3,1e-4 --search model.blocks=2,4; selects on validation")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and whether they are done")
    parser.set_defaults(func=main)


def search_from_args(items) -> dict | str | None:
    """``["paper"]`` → "paper"; ``["train.lr=1e-3,1e-4"]`` → {"train.lr": [0.001, 0.0001]}."""
    if not items:
        return None
    if items == ["paper"]:
        return "paper"
    grid = {}
    for item in items:
        if item == "paper":
            raise ValueError("--search paper cannot be combined with other --search keys")
        key, value = parse_override(f"{item.partition('=')[0]}=[{item.partition('=')[2]}]")
        if "=" not in item or not isinstance(value, list):
            raise ValueError(f"--search {item!r}: expected SECTION.KEY=V1,V2,... (values as TOML literals)")
        grid[key] = value
    return grid


def main(args) -> int:
    overrides = dict(parse_override(text) for text in (args.set or ()))
    given = dict(algos=args.algos, seeds=args.seeds, out=args.out, workers=args.workers, cpus=args.cpus_per_run,
                 gpus=args.gpus_per_run, retries=args.retries, search=search_from_args(args.search))
    if args.spec:
        if args.config:
            given["configs"] = args.config
        sweep = load_sweep(args.spec, overrides=overrides, **given)
    elif args.config:
        sweep = build_sweep(configs=args.config, overrides=overrides,
                            **{k: v for k, v in given.items() if v is not None})
    else:
        raise ValueError("give a sweep file SPEC.toml or --config CONFIG.toml ...")
    pending, skipped = pending_runs(sweep)
    print(f"sweep: {len(sweep.runs)} runs, {skipped} already done, {len(pending)} to run "
          f"({'Ray' if args.ray or args.ray_address else f'local pool of {sweep.workers}'})")
    if args.dry_run:
        for spec in sweep.runs:
            print(f"  {'todo' if spec in pending else 'done'}  {spec.label}")
        return 0
    start = time.perf_counter()
    if args.ray or args.ray_address:
        outcome = run_ray(sweep, args.ray_address, local_cpus=args.workers)
    else:
        outcome = run_local(sweep)
    print(f"sweep: {len(outcome['done'])} finished, {outcome['skipped']} skipped, {len(outcome['failed'])} failed "
          f"in {time.perf_counter() - start:.0f} s")
    for spec, why in outcome["failed"]:
        print(f"  FAILED {spec.label}: {why}", file=sys.stderr)
    for selection in select(sweep):
        print_selection(selection)
    outs = sorted({s["out"] for s in outcome["done"]} or ({sweep.out} if sweep.out else set()))
    if outs:
        print("summarise with: " + "; ".join(f"hamecho report {o}" for o in outs))
    return 1 if outcome["failed"] else 0
