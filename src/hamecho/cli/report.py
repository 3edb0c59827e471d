"""``hamecho report RUNS_DIR``: tables (Markdown, CSV) and plots from result files (``hamecho.tools.report``)."""
from __future__ import annotations

import sys

from ..tools.report import write_report


def add_command(subparsers) -> None:
    parser = subparsers.add_parser(
        "report", help="tables (Markdown, CSV) and plots from training results",
        description="Collect every result JSON under RUNS_DIR and write report.md, summary.csv and PNG plots "
                    "(learning curves, RHEL vs BPTT per dataset): mean ± population std over seeds per "
                    "dataset × model × algorithm, in the layout of the paper's Tables 1 and 2.")
    parser.add_argument("runs_dir", metavar="RUNS_DIR")
    parser.add_argument("--out", help="where to write the report (default RUNS_DIR)")
    parser.add_argument("--no-plots", action="store_true")
    parser.set_defaults(func=main)


def main(args) -> int:
    report = write_report(args.runs_dir, args.out, plots=not args.no_plots)
    sys.stdout.write(report["markdown"])
    print("\nwritten: " + ", ".join(str(p) for p in report["files"].values()))
    return 0
