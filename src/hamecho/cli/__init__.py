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
import itertools
import os
import sys
import warnings
from pathlib import Path

from .. import runtime

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
    "hamecho.cli.longrange",
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
    parser.add_argument("--no-compile-cache", action="store_true",
                        help="compile everything afresh: no persistent compilation cache (default: on, in "
                             "$HAMECHO_COMPILE_CACHE or ~/.cache/hamecho/jax; HAMECHO_COMPILE_CACHE=off does the same)")
    parser.add_argument("--no-huge-pages", action="store_true",
                        help="leave glibc's malloc as it is (default: the hamecho command restarts itself once with "
                             "GLIBC_TUNABLES=glibc.malloc.hugetlb=1, transparent huge pages for its arrays; "
                             "HAMECHO_HUGE_PAGES=off does the same); docs/performance.md")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_command(subparsers)
    return parser


PACKAGE = Path(__file__).resolve().parent.parent


def one_line_warnings(command: str):
    """A ``warnings.showwarning`` that prints hamecho's own user warnings as ``hamecho COMMAND: warning: ...``
    (no source line); other warnings look as usual."""
    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, UserWarning) and Path(filename).resolve().is_relative_to(PACKAGE):
            print(f"hamecho {command}: warning: {message}", file=sys.stderr if file is None else file, flush=True)
        else:
            default(message, category, filename, lineno, file, line)
    return show


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.no_compile_cache:
        os.environ[runtime.COMPILE_CACHE_ENV] = "off"  # for the processes this one starts, too
    else:
        runtime.enable_compilation_cache()
    try:
        with warnings.catch_warnings():
            warnings.showwarning = one_line_warnings(args.command)
            return int(args.func(args) or 0)
    except ValueError as error:  # bad user input: one clear line, no traceback
        print(f"hamecho {args.command}: error: {error}", file=sys.stderr)
        return 2


def console() -> None:
    """The ``hamecho`` command: :func:`main` with huge pages for malloc (module ``hamecho.runtime``: the
    process restarts itself once to get them, before JAX is loaded), unless ``--no-huge-pages`` comes before
    the command or ``HAMECHO_HUGE_PAGES=off``."""
    argv = sys.argv[1:]
    if "--no-huge-pages" in itertools.takewhile(lambda arg: arg.startswith("-"), argv):
        os.environ[runtime.HUGE_PAGES_ENV] = "off"  # for the processes this one starts, too
    runtime.reexec_with_huge_pages(argv)
    sys.exit(main(argv))


if __name__ == "__main__":
    console()
