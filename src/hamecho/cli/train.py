"""``hamecho train CONFIG.toml ...``: every (algorithm, seed) of each configuration (``hamecho.training``)."""
from __future__ import annotations

import argparse
import sys

from ..training import (
    ConfigError,
    Interrupted,
    format_metric,
    load_config,
    load_data,
    processes,
    read_result,
    run_paths,
    train_config,
)
from ..training.checkpoints import remove_checkpoint
from ..training.config import parse_override
from ..training.loop import locate_data


def overrides_from_args(args) -> dict:
    """The dotted-key overrides given by the command-line flags (``--set`` first, named flags win)."""
    overrides = {}
    for text in args.set or ():
        key, value = parse_override(text)
        overrides[key] = value
    if args.algo is not None:
        overrides["train.algos"] = [a for a in args.algo.split(",") if a]
    named = {"train.eps": args.eps, "train.steps": args.steps, "train.lr": args.lr, "train.dtype": args.dtype,
             "out": args.out, "data.data_dir": args.data_dir}
    if args.seeds is not None:
        named["train.seeds"] = args.seeds
    overrides.update({k: v for k, v in named.items() if v is not None})
    return overrides


def add_override_flags(parser) -> None:
    parser.add_argument("--algo", metavar="ALGO[,ALGO]", help="rhel, bptt or rhel,bptt (train.algos)")
    parser.add_argument("--eps", type=float, help="RHEL nudge strength (train.eps)")
    parser.add_argument("--seeds", type=int, nargs="+", metavar="SEED", help="seeds (train.seeds)")
    parser.add_argument("--steps", type=int, help="maximum training steps (train.steps)")
    parser.add_argument("--lr", type=float, help="Adam learning rate (train.lr)")
    parser.add_argument("--dtype", help="float32 or float64 (train.dtype)")
    parser.add_argument("--out", help="results folder (out; default runs)")
    parser.add_argument("--data-dir", help="local data folder searched first (data.data_dir)")
    parser.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                        help="override any key, value as a TOML literal (repeatable), e.g. --set train.batch_size=16")


def add_command(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="train HSSMs with RHEL and/or BPTT from TOML configs",
        description="Train every (algorithm, seed) of each configuration file and write one result JSON per run "
                    "under OUT/<config name>/<algo>/seed<seed>.json. Finished runs are skipped. See "
                    "docs/training.md for the configuration keys.")
    parser.add_argument("configs", nargs="+", metavar="CONFIG.toml")
    add_override_flags(parser)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue interrupted runs from their checkpoints")
    group.add_argument("--restart", action="store_true", help="discard checkpoints of interrupted runs")
    parser.add_argument("--check", action="store_true",
                        help="validate the configs, find (without reading) their data, and exit")
    add_parallel_flags(parser)
    parser.add_argument("--quiet", action="store_true", help="no per-evaluation lines")
    parser.set_defaults(func=main)


def devices_value(text: str) -> int | str:
    """``--devices``: a positive integer or "all"."""
    if text == "all":
        return text
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise argparse.ArgumentTypeError(f"a positive integer or 'all'; got {text!r}")


def add_parallel_flags(parser) -> None:
    group = parser.add_argument_group(
        "several devices and processes (docs/scaling.md)",
        "Data-parallel training of each run: every batch is split over the devices, the model is replicated. "
        "Several processes (on one or more machines) start the same command with their own --process-id, or "
        "under a launcher (srun, mpirun, or JAX_COORDINATOR_ADDRESS with HAMECHO_NUM_PROCESSES and "
        "HAMECHO_PROCESS_ID set); process 0 writes the checkpoints, results and logs.")
    group.add_argument("--devices", type=devices_value, metavar="N|all",
                       help="devices per process (default 1); on a machine without accelerators, N CPU devices")
    group.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0, reachable by every process")
    group.add_argument("--num-processes", type=int, metavar="N", help="processes in the run")
    group.add_argument("--process-id", type=int, metavar="I", help="this process's index, 0..N-1")


def main(args) -> int:
    if isinstance(args.devices, int):
        processes.request_cpu_devices(args.devices)   # before JAX starts its backends
    processes.start(args.coordinator, args.num_processes, args.process_id)
    with processes.exit_on_failure("hamecho train"):
        return train_main(args)


def train_main(args) -> int:
    writer = processes.Processes.current().writer
    overrides = overrides_from_args(args)
    note = lambda text: print(f"hamecho train: {text}", file=sys.stderr, flush=True)
    configs = [load_config(path, overrides, note=note) for path in args.configs]   # all validated first
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise ConfigError(f"two configurations share the name {max(names, key=names.count)!r}; give one a "
                          "different top-level name")
    if args.check:  # the data is found (not read) too, so that a misspelled dataset fails here
        found = []
        for c in configs:
            try:
                found.append(locate_data(c))
            except ValueError as error:  # DataNotFoundError too
                raise ConfigError(f"{c.source}: {error}") from None
        for c, where in zip(configs, found):
            print(f"{c.source}: ok ({c.name}: {c.data.dataset}, {c.model.hru} HRU, algos {', '.join(c.train.algos)}, "
                  f"seeds {', '.join(map(str, c.train.seeds))}; data: {where})")
        return 0
    for c in configs:  # fail on missing data before any training starts
        load_data(c, c.train.seeds[0])
    if args.restart and writer:
        for c in configs:
            for seed in c.train.seeds:
                for algo in c.train.algos:
                    result, checkpoint = run_paths(c, algo, seed)
                    if not result.exists():
                        remove_checkpoint(checkpoint)
    log = None if args.quiet or not writer else (lambda line: print(line, file=sys.stderr, flush=True))
    busy = (lambda error: print(f"hamecho train: {error}", file=sys.stderr, flush=True)) if writer else (lambda e: None)
    try:
        for c in configs:
            for path in train_config(c, resume=args.resume, log=log, devices=args.devices, on_busy=busy):
                if not writer:
                    continue
                r = read_result(path)
                print(f"{r['config_name']} {r['algo']} seed {r['seed']}: test {r['metric']} "
                      f"{format_metric(r['test_metric'])} (best val {format_metric(r['best_val_metric'])} at step "
                      f"{r['best_step']}; {r['steps']} steps, {r['stopped']}, {r['wall_time_s']:.1f} s) -> {path}",
                      flush=True)
    except Interrupted as stop:
        if writer:
            print(f"hamecho train: {stop}; run the same command with --resume to continue", file=sys.stderr)
        return 130
    return 0
