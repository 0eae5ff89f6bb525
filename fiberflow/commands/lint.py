"""``fiberflow lint``: Verilator -Wall lint of what ships (the generated shell with picorv32,
in each lane variant) and of every overlay primitive, with documented waivers."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lint",
        help="lint the generated shell (every lane variant) and every overlay primitive with "
        "verilator --lint-only -Wall",
        description="Generate the shell (with picorv32) in each lane variant and the Verilog of "
        "every overlay primitive, and lint them with Verilator (-Wall). Exits non-zero on any "
        "warning outside the documented waiver list (fiberflow/overlay/sim/lint.py, "
        "docs/overlay.md).",
    )
    p.add_argument("--waivers", action="store_true", help="list the waivers and why, then exit")
    p.add_argument("-v", "--verbose", action="store_true", help="also show waived warnings")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fiberflow.overlay.primitives.registry import PRIMITIVES
    from fiberflow.overlay.sim.lint import SHELL_VARIANTS, WAIVERS, lint_primitive, lint_shell
    from fiberflow.progress import progress

    if args.waivers:
        for w in WAIVERS:
            print(f"{w.code:13} {w.pattern or '(all)':40} {w.why}")
        return 0
    designs = [("shell", v) for v in SHELL_VARIANTS] + [("primitive", p) for p in PRIMITIVES]
    failed = 0
    for kind, name in progress(designs, desc="lint"):
        bad, waived = lint_shell(name) if kind == "shell" else lint_primitive(name)
        status = "ok" if not bad else f"{len(bad)} warning(s)"
        print(f"{kind} {name:18} {status:14} ({len(waived)} waived)")
        for line in bad:
            print(f"    {line}")
        if args.verbose:
            for line in waived:
                print(f"    waived: {line}")
        failed += bool(bad)
    if failed:
        print(f"lint: {failed} design(s) have unwaived warnings")
        return 1
    print(f"lint: {len(SHELL_VARIANTS)} shell variants and {len(PRIMITIVES)} primitives clean")
    return 0
