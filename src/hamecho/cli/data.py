"""``hamecho data list`` and ``hamecho data info NAME`` / ``hamecho data info PATH`` (a data file of your own)."""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def _list(args: argparse.Namespace) -> int:
    from ..data.registry import list_datasets

    for name, where in list_datasets(args.data_dir):
        print(f"{name:45s} {where}")
    return 0


_FILE_OPTIONS = ("test_path", "series_column", "time_column", "label_column", "target_column", "missing")


def _info(args: argparse.Namespace) -> int:
    from ..data.files import looks_like_path
    from ..data.registry import load

    file_options = {k: getattr(args, k) for k in _FILE_OPTIONS if getattr(args, k) is not None}
    if file_options and not looks_like_path(args.name):
        flags = ", ".join("--" + ("test" if k == "test_path" else k.replace("_", "-")) for k in file_options)
        raise ValueError(f"{flags}: options for data files, but {args.name!r} is a dataset name")
    try:
        ds = load(args.name, args.data_dir, seed=args.seed, length=args.length, num_samples=args.num_samples,
                  split_dir=args.split_dir, download=True if args.download else None, **file_options)
    except ImportError as error:          # an optional reader (pyarrow for Parquet) is not installed
        print(f"hamecho data: error: {error}", file=sys.stderr)
        return 2
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
    if hasattr(ds, "batch"):            # a generated source: samples are made per batch, none is counted here
        shape = (f"{ds.num_classes} classes: {', '.join(ds.class_names)}" if ds.task == "classification"
                 else f"{ds.out_dim}-dim targets, one per {ds.output_step} steps")
        label = "classes" if ds.task == "classification" else "targets"
        print(f"{label}:   {shape} (made batch by batch, not counted)")
    elif ds.task == "classification":
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
    p_info.add_argument("name", metavar="NAME_OR_PATH",
                        help="e.g. ucr/EthanolLevel, uea/BasicMotions, ppg, fashion-mnist, synthetic/first5, "
                             "generated/adding (made on demand), or a data file of your own: "
                             "./my.npz, ./my.csv, ./my.parquet, ./my.ts, ./my.arff, ./my.tsv")
    p_info.add_argument("--seed", type=int, default=2345)
    p_info.add_argument("--length", type=int, default=None)
    p_info.add_argument("--num-samples", type=int, default=None)
    p_info.add_argument("--split-dir", default=None, help="where split index files live")
    p_info.add_argument("--download", action="store_true", help="allow downloading when not found locally")
    p_info.add_argument("--json", action="store_true", help="print the summary as JSON")
    own = p_info.add_argument_group("data files of your own (see docs/data.md, 'Your own data')")
    own.add_argument("--test", dest="test_path", default=None, metavar="PATH",
                     help="a second file holding the test set (the first is then split into train/validation)")
    own.add_argument("--series-column", default=None, help="CSV/Parquet: the series id column (default: series)")
    own.add_argument("--time-column", default=None, help="CSV/Parquet: the time column (default: time)")
    own.add_argument("--label-column", default=None, help="CSV/Parquet: the class label column (default: label)")
    own.add_argument("--target-column", default=None,
                     help="CSV/Parquet: the regression target column (default: target)")
    own.add_argument("--missing", choices=("error", "interpolate"), default=None,
                     help="NaN in the series: an error, or filled by the archive rule (default: error; "
                          "interpolate for .ts/.arff/.tsv)")
    p_info.set_defaults(func=_info)
    for p in (p_list, p_info):
        p.add_argument("--data-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
