"""Command-line entry point: ``hamecho <command> ...``.

This package is the only place that parses arguments: each command is one module here holding its
argparse parser and a ``main(args)`` that calls the library (``hamecho.training``, ``hamecho.tools``,
``hamecho.data``). A module contributes a command by exposing ``add_command(subparsers)``, which
registers a sub-parser whose ``func`` default is called with the parsed arguments and returns the
process exit code.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# Modules that contribute sub-commands, in the order they appear in ``--help``.
COMMAND_MODULES = (
    "hamecho.cli.gradcheck",
    "hamecho.cli.data",
    "hamecho.cli.demo",
    "hamecho.cli.train",
    "hamecho.cli.report",
    "hamecho.cli.run",
    "hamecho.cli.sweep",
    "hamecho.cli.bench",
    "hamecho.cli.robustness",
    "hamecho.cli.rules",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hamecho",
        description=(
            "Train Hamiltonian recurrent models with Recurrent Hamiltonian Echo Learning (RHEL), "
            "side by side with backpropagation through time (BPTT)."
        ),
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_command(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValueError as error:  # bad user input: one clear line, no traceback
        print(f"hamecho {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
