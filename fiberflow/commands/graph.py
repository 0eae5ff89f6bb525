"""``fiberflow graph EXPR``: compile an expression and write its SAM graph (Graphviz dot)."""

from __future__ import annotations

import argparse
from pathlib import Path

import fiberflow as ff
from fiberflow.errors import FormatError
from fiberflow.host.compiler.draw import draw


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "graph",
        help="compile an expression and write its SAM graph",
        description="Compile a tensor expression in index notation (docs/compiler.md) and "
        "print its loop order and the primitives its graph uses; with -o, write the graph: "
        "Graphviz's dot text (.dot), or a picture (.svg, .png, .pdf: needs matplotlib).",
    )
    p.add_argument("expression", help='e.g. "X(i,j) = B(i,k) * C(k,j)"')
    p.add_argument("--formats", nargs="*", default=[], metavar="NAME=FORMAT",
                   help="operand and result formats, e.g. B=ds C=ds:1,0")  # fmt: skip
    p.add_argument("--order", help="loop order, e.g. ikj (default: the compiler's choice)")
    p.add_argument("--semiring", default="plus_times", help="a GraphBLAS semiring name")
    p.add_argument(
        "-o", "--output", type=Path, metavar="FILE", help="write FILE (.dot .svg .png .pdf)"
    )
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
    elif suffix in (".svg", ".png", ".pdf"):
        draw(k.graph, args.output)
    else:
        raise FormatError(f"-o writes .dot, .svg, .png or .pdf, not {args.output.name!r}")
    print(f"wrote {args.output}")
    return 0
