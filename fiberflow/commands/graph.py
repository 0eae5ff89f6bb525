"""``fiberflow graph EXPR``: compile an expression and write its SAM graph (Graphviz dot)."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import fiberflow as ff
from fiberflow.errors import FormatError, ToolchainError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "graph",
        help="compile an expression and write its SAM graph",
        description="Compile a tensor expression in index notation (docs/compiler.md) and "
        "print its loop order and the primitives its graph uses; with -o, write the graph: "
        ".dot always, .svg or .png through Graphviz's dot when it is installed beside this "
        "Python.",
    )
    p.add_argument("expression", help='e.g. "X(i,j) = B(i,k) * C(k,j)"')
    p.add_argument("--formats", nargs="*", default=[], metavar="NAME=FORMAT",
                   help="operand and result formats, e.g. B=ds C=ds:1,0")  # fmt: skip
    p.add_argument("--order", help="loop order, e.g. ikj (default: the compiler's choice)")
    p.add_argument("--semiring", default="plus_times", help="a GraphBLAS semiring name")
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="write FILE (.dot/.svg/.png)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    formats = {}
    for item in args.formats:
        name, sep, fmt = item.partition("=")
        if not sep or not name or not fmt:
            raise FormatError(f"--formats takes NAME=FORMAT items, e.g. B=ds, not {item!r}")
        formats[name] = fmt
    k = ff.compile(args.expression, formats, order=args.order, semiring=args.semiring)
    print(k)
    print(", ".join(f"{kind} x{n}" for kind, n in k.graph.count().items()))
    if args.output is None:
        return 0
    dot = k.graph.to_dot()
    suffix = args.output.suffix.lower()
    if suffix == ".dot":
        args.output.write_text(dot)
    elif suffix in (".svg", ".png"):
        tool = shutil.which("dot", path=str(Path(sys.executable).parent))
        if tool is None:
            raise ToolchainError(
                f"writing {suffix} needs Graphviz's dot beside this Python "
                f"({Path(sys.executable).parent}); write a .dot file and run "
                f"dot -T{suffix[1:]} FILE.dot -o {args.output}"
            )
        subprocess.run([tool, f"-T{suffix[1:]}", "-o", str(args.output)], input=dot,
                       text=True, check=True, timeout=120)  # fmt: skip
    else:
        raise FormatError(f"-o writes .dot, .svg or .png, not {args.output.name!r}")
    print(f"wrote {args.output}")
    return 0
