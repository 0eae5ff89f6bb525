"""``fiberflow bench TARGET``: measure; keep the data and plots in a folder, and record the
table in a Markdown document when asked."""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path

from fiberflow import bench


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="run a benchmark; data and plots into a folder, the table into a document on request",
        description="Run a benchmark and print its table. Its data (JSON) and plots go into "
        "--out DIR (default: a new folder named for the run in the current directory); with "
        "--doc FILE, its table also replaces its own section of that Markdown file (the "
        "project records with --doc docs/benchmarks.md --out docs/bench).",
    )
    targets = p.add_subparsers(dest="target", metavar="TARGET", required=True)
    for name in bench.TARGETS:
        module = importlib.import_module(f"fiberflow.bench.{name}")
        t = targets.add_parser(name, help=module.DESCRIPTION, description=module.DESCRIPTION)
        t.add_argument(
            "--out",
            type=Path,
            metavar="DIR",
            help=f"folder for the JSON data and plots (default: ./fiberflow-bench-{name}-"
            "<date>-<time>, created for the run)",
        )
        t.add_argument(
            "--doc",
            type=Path,
            metavar="FILE",
            help="also record the table in this Markdown file, in its own section (other "
            "sections are kept); plots are linked relative to it",
        )
        module.add_arguments(t)
        t.set_defaults(func=run, module=module)


def run(args: argparse.Namespace) -> int:
    if args.out is None:
        args.out = Path(f"fiberflow-bench-{args.target}-{time.strftime('%Y%m%d-%H%M%S')}")
    args.out.mkdir(parents=True, exist_ok=True)
    report = args.module.run(args)
    print(report.markdown())
    data = args.out / f"{report.target}.json"
    bench.write_json(data, report)
    print(f"data: {data}")
    for plot in report.plots:
        print(f"plot: {plot}")
    if args.doc is not None:
        args.doc.parent.mkdir(parents=True, exist_ok=True)
        bench.write_section(args.doc, report)
        print(f"recorded in {args.doc}")
    return 0
