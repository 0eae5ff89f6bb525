"""``fiberflow bench TARGET``: measure, and record the numbers in docs/benchmarks.md."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from fiberflow import bench


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="run a benchmark and record it in docs/benchmarks.md",
        description="Run a benchmark. Its table goes into its own section of the benchmarks "
        "document, its data into a JSON file, and its plots beside the document.",
    )
    targets = p.add_subparsers(dest="target", metavar="TARGET", required=True)
    for name in bench.TARGETS:
        module = importlib.import_module(f"fiberflow.bench.{name}")
        t = targets.add_parser(name, help=module.DESCRIPTION, description=module.DESCRIPTION)
        t.add_argument(
            "--doc",
            type=Path,
            default=Path("docs/benchmarks.md"),
            help="the Markdown file to update (default: docs/benchmarks.md)",
        )
        t.add_argument(
            "--out",
            type=Path,
            default=Path("docs/bench"),
            help="folder for the JSON data and plots (default: docs/bench)",
        )
        t.add_argument("--no-doc", action="store_true", help="print only; leave the doc alone")
        module.add_arguments(t)
        t.set_defaults(func=run, module=module)


def run(args: argparse.Namespace) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    report = args.module.run(args)
    print(report.markdown())
    bench.write_json(args.out / f"{report.target}.json", report)
    if not args.no_doc:
        args.doc.parent.mkdir(parents=True, exist_ok=True)
        bench.write_section(args.doc, report)
        print(f"recorded in {args.doc}")
    return 0
