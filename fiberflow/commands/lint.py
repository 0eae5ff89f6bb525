"""``fiberflow lint``: Verilator -Wall lint of every overlay primitive, with documented waivers."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lint",
        help="lint the Verilog of every overlay primitive with verilator --lint-only -Wall",
        description="Emit the Verilog of every overlay primitive and lint it with Verilator "
        "(-Wall). Exits non-zero on any warning outside the documented waiver list "
        "(fiberflow/overlay/lint.py, docs/primitives.md).",
    )
    p.add_argument("--waivers", action="store_true", help="list the waivers and why, then exit")
    p.add_argument("-v", "--verbose", action="store_true", help="also show waived warnings")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fiberflow.overlay.lint import WAIVERS, lint_primitive
    from fiberflow.overlay.registry import PRIMITIVES
    from fiberflow.progress import progress

    if args.waivers:
        for w in WAIVERS:
            print(f"{w.code:13} {w.pattern or '(all)':22} {w.why}")
        return 0
    results = {name: lint_primitive(name) for name in progress(PRIMITIVES, desc="lint")}
    failed = 0
    for name, (bad, waived) in results.items():
        status = "ok" if not bad else f"{len(bad)} warning(s)"
        print(f"{name:18} {status:14} ({len(waived)} waived)")
        for line in bad:
            print(f"    {line}")
        if args.verbose:
            for line in waived:
                print(f"    waived: {line}")
        failed += bool(bad)
    if failed:
        print(f"lint: {failed} primitive(s) have unwaived warnings")
        return 1
    print(f"lint: {len(results)} primitives clean")
    return 0
