"""``hamecho data list`` and ``hamecho data info NAME``."""
from __future__ import annotations

import argparse
import json

import numpy as np


def _list(args: argparse.Namespace) -> int:
    from ..data.registry import list_datasets

    for name, where in list_datasets(args.data_dir):
        print(f"{name:45s} {where}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from ..data.registry import load

    ds = load(args.name, args.data_dir, seed=args.seed, length=args.length, num_samples=args.num_samples,
              split_dir=args.split_dir, download=True if args.download else None)
    info = ds.summary()
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    print(f"name:      {info['name']}")
    print(f"task:      {info['task']}")
    print(f"found in:  {info['source']}")
    cases = info["cases"]
    print(f"cases:     {sum(cases.values())} (train {cases['train']}, val {cases['val']}, test {cases['test']})")
    print(f"length:    {info['length']} steps (after padding/truncation)")
    print(f"channels:  {info['channels']}")
    if ds.task == "classification":
        counts = np.bincount(np.concatenate([ds.y_train, ds.y_val, ds.y_test]), minlength=ds.num_classes)
        print(f"classes:   {ds.num_classes}: " + ", ".join(f"{n} ({c})" for n, c in zip(ds.class_names, counts)))
    else:
        lo, hi = info["target_range"] or (float("nan"), float("nan"))
        print(f"targets:   {ds.out_dim}-dim, one per {ds.output_step} steps, range [{lo:.4g}, {hi:.4g}]")
    return 0


def add_command(subparsers) -> None:
    parser = subparsers.add_parser("data", help="list and inspect datasets",
                                   description="List the datasets available here and describe one.")
    parser.add_argument("--data-dir", default=None, help="local data folder, searched first (default: $HAMECHO_DATA)")
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    sub.required = True
    p_list = sub.add_parser("list", help="datasets loadable without downloading, with where they were found")
    p_list.set_defaults(func=_list)
    p_info = sub.add_parser("info", help="cases, channels, lengths, classes or target range, source")
    p_info.add_argument("name", help="e.g. ucr/EthanolLevel, uea/BasicMotions, ppg, fashion-mnist, synthetic/first5")
    p_info.add_argument("--seed", type=int, default=2345)
    p_info.add_argument("--length", type=int, default=None)
    p_info.add_argument("--num-samples", type=int, default=None)
    p_info.add_argument("--split-dir", default=None, help="where split index files live")
    p_info.add_argument("--download", action="store_true", help="allow downloading when not found locally")
    p_info.add_argument("--json", action="store_true", help="print the summary as JSON")
    p_info.set_defaults(func=_info)
    for p in (p_list, p_info):
        p.add_argument("--data-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
